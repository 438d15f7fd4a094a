//! One crontab(5) field: `*`, numbers, names, ranges, lists and steps, parsed
//! into the set of values it matches. Errors are phrased for the user and
//! name the offending piece; the caller prefixes the field's name.

/// What a field accepts.
pub(super) struct FieldSpec {
    pub name: &'static str,
    pub min: u32,
    pub max: u32,
    /// Three-letter names for `min`, `min + 1`...; empty when the field has none.
    pub names: &'static [&'static str],
    /// How the names are described in errors (`month name (jan-dec)`).
    pub names_hint: &'static str,
}

pub(super) const MINUTE: FieldSpec = FieldSpec { name: "minute", min: 0, max: 59, names: &[], names_hint: "" };
pub(super) const HOUR: FieldSpec = FieldSpec { name: "hour", min: 0, max: 23, names: &[], names_hint: "" };
pub(super) const DAY_OF_MONTH: FieldSpec =
    FieldSpec { name: "day-of-month", min: 1, max: 31, names: &[], names_hint: "" };
pub(super) const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
    names_hint: "month name (jan-dec)",
};
/// 0 and 7 are both Sunday, as in crontab(5).
pub(super) const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    names_hint: "weekday name (sun-sat)",
};

/// The values a field matches, as a bit set (bit `n` = value `n`; all our
/// fields fit in 0..=59).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ValueSet(u64);

impl ValueSet {
    pub fn insert(&mut self, value: u32) {
        self.0 |= 1 << value;
    }

    pub fn contains(self, value: u32) -> bool {
        self.0 & (1 << value) != 0
    }

    pub fn remove(&mut self, value: u32) {
        self.0 &= !(1 << value);
    }

    pub fn values(self) -> impl Iterator<Item = u32> {
        (0..64).filter(move |&value| self.contains(value))
    }
}

/// Parses one field into its value set.
pub(super) fn parse(spec: &FieldSpec, text: &str) -> Result<ValueSet, String> {
    let mut set = ValueSet(0);
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!("empty element in list `{text}`"));
        }
        parse_item(spec, item, &mut set)?;
    }
    Ok(set)
}

/// `*`, `N`, `A-B`, each optionally followed by `/STEP` (not after a lone `N`).
fn parse_item(spec: &FieldSpec, item: &str, set: &mut ValueSet) -> Result<(), String> {
    let (base, step) = match item.split_once('/') {
        Some((base, step)) => (base, Some(parse_step(spec, item, step)?)),
        None => (item, None),
    };
    let (start, end) = if base == "*" {
        (spec.min, spec.max)
    } else if let Some((start, end)) = base.split_once('-') {
        let (start, end) = (parse_value(spec, item, start)?, parse_value(spec, item, end)?);
        if start > end {
            return Err(format!("range {base} runs backwards (the start must not be after the end)"));
        }
        (start, end)
    } else {
        let value = parse_value(spec, item, base)?;
        if step.is_some() {
            return Err(format!(
                "`{item}`: a step needs a range or `*` before it (did you mean `{base}-{}/...`?)",
                spec.max
            ));
        }
        (value, value)
    };
    let step = step.unwrap_or(1);
    (start..=end).step_by(step as usize).for_each(|value| set.insert(value));
    Ok(())
}

fn parse_step(spec: &FieldSpec, item: &str, step: &str) -> Result<u32, String> {
    let span = spec.max - spec.min + 1;
    match step.parse::<u32>() {
        Ok(step) if (1..=span).contains(&step) => Ok(step),
        Ok(step) => Err(format!("step {step} in `{item}` is out of range 1-{span}")),
        Err(_) => Err(format!("step `{step}` in `{item}` is not a number")),
    }
}

fn parse_value(spec: &FieldSpec, item: &str, text: &str) -> Result<u32, String> {
    if text.is_empty() {
        return Err(format!("`{item}` is missing a value"));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(value) if (spec.min..=spec.max).contains(&value) => Ok(value),
            _ => Err(format!("{text} is out of range {}-{}", spec.min, spec.max)),
        };
    }
    let lower = text.to_ascii_lowercase();
    if let Some((_, value)) = spec.names.iter().zip(spec.min..).find(|(name, _)| **name == lower) {
        return Ok(value);
    }
    if spec.names.is_empty() {
        Err(format!("`{text}` is not a number"))
    } else {
        Err(format!("`{text}` is not a number or a {}", spec.names_hint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(spec: &FieldSpec, text: &str) -> Vec<u32> {
        parse(spec, text).unwrap().values().collect()
    }

    #[test]
    fn stars_ranges_lists_steps_and_names() {
        assert_eq!(values(&MINUTE, "*").len(), 60);
        assert_eq!(values(&MINUTE, "*/15"), [0, 15, 30, 45]);
        assert_eq!(values(&MINUTE, "1-30/5"), [1, 6, 11, 16, 21, 26]);
        assert_eq!(values(&HOUR, "9-17/2"), [9, 11, 13, 15, 17]);
        assert_eq!(values(&DAY_OF_MONTH, "1,15"), [1, 15]);
        assert_eq!(values(&MONTH, "JAN,Mar-may"), [1, 3, 4, 5]);
        assert_eq!(values(&DAY_OF_WEEK, "mon-FRI"), [1, 2, 3, 4, 5]);
        assert_eq!(values(&DAY_OF_WEEK, "*/2"), [0, 2, 4, 6]);
        assert_eq!(values(&DAY_OF_WEEK, "5-7"), [5, 6, 7]);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let error = |spec: &FieldSpec, text: &str| parse(spec, text).unwrap_err();
        assert_eq!(error(&DAY_OF_WEEK, "8"), "8 is out of range 0-7");
        assert_eq!(error(&MINUTE, "60"), "60 is out of range 0-59");
        assert_eq!(error(&DAY_OF_MONTH, "0"), "0 is out of range 1-31");
        assert_eq!(error(&HOUR, "5-1"), "range 5-1 runs backwards (the start must not be after the end)");
        assert_eq!(error(&MINUTE, "*/0"), "step 0 in `*/0` is out of range 1-60");
        assert_eq!(error(&MINUTE, "*/x"), "step `x` in `*/x` is not a number");
        assert_eq!(error(&MINUTE, "5/10"), "`5/10`: a step needs a range or `*` before it (did you mean `5-59/...`?)");
        assert_eq!(error(&MINUTE, "1,,2"), "empty element in list `1,,2`");
        assert_eq!(error(&MINUTE, "mon"), "`mon` is not a number");
        assert_eq!(error(&MONTH, "foo"), "`foo` is not a number or a month name (jan-dec)");
        assert_eq!(error(&DAY_OF_WEEK, "monday"), "`monday` is not a number or a weekday name (sun-sat)");
        assert_eq!(error(&MINUTE, "-5"), "`-5` is missing a value");
        assert_eq!(error(&MINUTE, "1-"), "`1-` is missing a value");
        assert_eq!(error(&MINUTE, "1-2-3"), "`2-3` is not a number");
        assert_eq!(error(&MINUTE, "99999999999"), "99999999999 is out of range 0-59");
    }
}
