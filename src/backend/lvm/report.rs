//! Reading `lvs --reportformat json` (lvm2 2.03): every value is a string,
//! sizes are plain byte counts with `--units b --nosuffix`, and a percentage
//! LVM cannot tell (an inactive LV) is an empty string.

use serde_json::Value;

/// The columns asked of `lvs`, in the order [`LvRow`] reads them.
pub const FIELDS: &str = "lv_name,vg_name,lv_uuid,lv_attr,lv_size,data_percent,metadata_percent,pool_lv,origin,\
                          lv_tags,segtype,lv_kernel_major,lv_kernel_minor,thin_id";

/// One LV of a report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LvRow {
    pub name: String,
    pub vg: String,
    pub uuid: String,
    /// `lv_attr`, e.g. `Vwi-aotz--` (see lvs(8)).
    pub attr: String,
    pub size_bytes: u64,
    pub data_percent: Option<f64>,
    pub metadata_percent: Option<f64>,
    /// The thin pool of a thin volume.
    pub pool: String,
    pub origin: String,
    pub tags: Vec<String>,
    pub segtype: String,
    /// Device numbers when active.
    pub device: Option<(u32, u32)>,
    pub thin_id: Option<u64>,
}

impl LvRow {
    pub fn is_thin_volume(&self) -> bool {
        self.segtype == "thin"
    }

    pub fn is_thin_pool(&self) -> bool {
        self.segtype == "thin-pool"
    }

    /// Read-only in the metadata (`lvchange -p r`); `R` in lv_attr is a
    /// read-only activation of a writable LV, which is not what we set.
    pub fn read_only(&self) -> bool {
        self.attr.as_bytes().get(1) == Some(&b'r')
    }

    pub fn active(&self) -> bool {
        self.device.is_some() || self.attr.as_bytes().get(4) == Some(&b'a')
    }

    /// Whether the activation-skip flag (`k`, lv_attr's 10th character) is set.
    pub fn skips_activation(&self) -> bool {
        self.attr.as_bytes().get(9) == Some(&b'k')
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// The value of the first tag starting with `prefix`.
    pub fn tag_value(&self, prefix: &str) -> Option<&str> {
        self.tags.iter().find_map(|t| t.strip_prefix(prefix))
    }
}

/// Parses the JSON `lvs` prints. Unknown columns are ignored; missing ones
/// are empty.
pub fn parse_lvs(json: &str) -> Result<Vec<LvRow>, String> {
    let value: Value = serde_json::from_str(json).map_err(|e| format!("lvs printed invalid JSON: {e}"))?;
    let reports = value.get("report").and_then(Value::as_array).ok_or("lvs JSON has no \"report\" array")?;
    let mut rows = Vec::new();
    for report in reports {
        let Some(lvs) = report.get("lv").and_then(Value::as_array) else { continue };
        for lv in lvs {
            rows.push(parse_row(lv)?);
        }
    }
    Ok(rows)
}

fn parse_row(lv: &Value) -> Result<LvRow, String> {
    let text = |key: &str| lv.get(key).and_then(Value::as_str).unwrap_or("").trim().to_string();
    let number = |key: &str| -> Result<Option<f64>, String> {
        let value = text(key);
        if value.is_empty() {
            return Ok(None);
        }
        value.parse::<f64>().map(Some).map_err(|_| format!("lvs: {key} is {value:?}, not a number"))
    };
    let major = text("lv_kernel_major").parse::<i64>().unwrap_or(-1);
    let minor = text("lv_kernel_minor").parse::<i64>().unwrap_or(-1);
    let device = match (u32::try_from(major), u32::try_from(minor)) {
        (Ok(major), Ok(minor)) => Some((major, minor)),
        _ => None,
    };
    let size = text("lv_size");
    let size_bytes = if size.is_empty() {
        0
    } else {
        size.parse::<u64>().map_err(|_| format!("lvs: lv_size is {size:?}; expected bytes (--units b --nosuffix)"))?
    };
    let tags = text("lv_tags");
    Ok(LvRow {
        name: text("lv_name"),
        vg: text("vg_name"),
        uuid: text("lv_uuid"),
        attr: text("lv_attr"),
        size_bytes,
        data_percent: number("data_percent")?,
        metadata_percent: number("metadata_percent")?,
        pool: text("pool_lv"),
        origin: text("origin"),
        tags: tags.split(',').filter(|t| !t.is_empty()).map(str::to_string).collect(),
        segtype: text("segtype"),
        device,
        thin_id: text("thin_id").parse().ok(),
    })
}

/// How full a pool is, and whether that refuses a snapshot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolFill {
    pub data_percent: f64,
    pub metadata_percent: f64,
}

impl PoolFill {
    /// The fill of a pool row; `None` when LVM cannot tell (inactive pool).
    pub fn of(pool: &LvRow) -> Option<PoolFill> {
        Some(PoolFill { data_percent: pool.data_percent?, metadata_percent: pool.metadata_percent.unwrap_or(0.0) })
    }

    /// True when data or metadata use is above `threshold` percent. A
    /// snapshot costs no space when taken, but every block the container then
    /// rewrites does; past the threshold the pool could fill and every thin
    /// volume in it would stop taking writes.
    pub fn above(&self, threshold: f64) -> bool {
        self.data_percent > threshold || self.metadata_percent > threshold
    }
}

/// The bytes of a `thin_delta` report (two thin devices of one pool) that
/// the second maps differently from the first or alone: `different` and
/// `right_only` ranges, in pool blocks of `data_block_size` sectors.
pub fn parse_thin_delta(xml: &str) -> Option<u64> {
    let attribute = |element: &str, name: &str| -> Option<u64> {
        let start = element.find(&format!(" {name}=\""))? + name.len() + 3;
        let end = start + element[start..].find('"')?;
        element[start..end].parse().ok()
    };
    let mut block_sectors = None;
    let mut blocks = 0u64;
    for element in xml.split('<').map(str::trim) {
        if element.starts_with("superblock ") {
            block_sectors = attribute(element, "data_block_size");
        } else if element.starts_with("different ") || element.starts_with("right_only ") {
            blocks += attribute(element, "length")?;
        }
    }
    Some(blocks * block_sectors? * 512)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What lvm2 2.03.16 prints for `lvs --reportformat json --units b
    /// --nosuffix -o <FIELDS> vg0`: a pool, a thin volume, a read-only
    /// snapshot with activation skip, inactive.
    const SAMPLE: &str = r#"  {
      "report": [
          {
              "lv": [
                  {"lv_name":"db-1", "vg_name":"vg0", "lv_uuid":"Xa8Ufh-0bTQ-ojyt-3ZJf-Hw3S-lmdB-7RkpQw", "lv_attr":"Vwi-aotz--", "lv_size":"104857600", "data_percent":"12.50", "metadata_percent":"", "pool_lv":"pool", "origin":"", "lv_tags":"", "segtype":"thin", "lv_kernel_major":"254", "lv_kernel_minor":"4", "thin_id":"1"},
                  {"lv_name":"pool", "vg_name":"vg0", "lv_uuid":"7gqv7e-DJ0c-f3aJ-0sVj-9u2X-eQ1V-pAX2pd", "lv_attr":"twi-aotz--", "lv_size":"67108864", "data_percent":"93.75", "metadata_percent":"10.94", "pool_lv":"", "origin":"", "lv_tags":"", "segtype":"thin-pool", "lv_kernel_major":"254", "lv_kernel_minor":"2", "thin_id":""},
                  {"lv_name":"rp-db-1.snap-2026-05-04", "vg_name":"vg0", "lv_uuid":"dwR1Pz-2G5N-Bq7k-nU0I-mVbH-ZgS1-vFzP7c", "lv_attr":"Vri---tz-k", "lv_size":"104857600", "data_percent":"", "metadata_percent":"", "pool_lv":"pool", "origin":"db-1", "lv_tags":"rollpoint,rp-swap-with.x", "segtype":"thin", "lv_kernel_major":"-1", "lv_kernel_minor":"-1", "thin_id":"2"}
              ]
          }
      ]
  }
"#;

    #[test]
    fn parses_an_lvs_report() {
        let rows = parse_lvs(SAMPLE).expect("parse");
        assert_eq!(rows.len(), 3);
        let volume = &rows[0];
        assert_eq!(volume.name, "db-1");
        assert_eq!(volume.vg, "vg0");
        assert_eq!(volume.size_bytes, 100 * 1024 * 1024);
        assert_eq!(volume.data_percent, Some(12.5));
        assert_eq!(volume.metadata_percent, None);
        assert_eq!(volume.device, Some((254, 4)));
        assert!(volume.is_thin_volume() && !volume.read_only() && volume.active() && !volume.skips_activation());
        assert_eq!(volume.thin_id, Some(1));
        let pool = &rows[1];
        assert!(pool.is_thin_pool());
        let snapshot = &rows[2];
        assert!(snapshot.read_only() && !snapshot.active() && snapshot.skips_activation());
        assert_eq!(snapshot.origin, "db-1");
        assert_eq!(snapshot.device, None);
        assert_eq!(snapshot.tags, vec!["rollpoint", "rp-swap-with.x"]);
        assert!(snapshot.has_tag("rollpoint"));
        assert_eq!(snapshot.tag_value("rp-swap-with."), Some("x"));
    }

    #[test]
    fn an_empty_report_has_no_rows() {
        let empty = "  {\n      \"report\": [\n          {\n              \"lv\": [\n              ]\n          }\n      ]\n  }\n";
        assert_eq!(parse_lvs(empty).expect("parse"), Vec::new());
    }

    #[test]
    fn malformed_reports_are_errors_not_panics() {
        assert!(parse_lvs("").is_err());
        assert!(parse_lvs("{}").is_err());
        assert!(parse_lvs(r#"{"report":[{"lv":[{"lv_name":"a","data_percent":"lots"}]}]}"#).is_err());
        assert!(parse_lvs(r#"{"report":[{"lv":[{"lv_name":"a","lv_size":"1.00g"}]}]}"#).is_err());
    }

    #[test]
    fn pool_fill_is_checked_against_the_threshold() {
        let rows = parse_lvs(SAMPLE).expect("parse");
        let fill = PoolFill::of(&rows[1]).expect("active pool");
        assert_eq!(fill, PoolFill { data_percent: 93.75, metadata_percent: 10.94 });
        assert!(fill.above(90.0));
        assert!(!fill.above(95.0));
        let metadata_full = PoolFill { data_percent: 1.0, metadata_percent: 90.5 };
        assert!(metadata_full.above(90.0));
        assert!(!PoolFill { data_percent: 90.0, metadata_percent: 90.0 }.above(90.0), "at the threshold is allowed");
        // An inactive pool: LVM cannot tell, so nothing to refuse on.
        assert_eq!(PoolFill::of(&rows[2]), None);
    }

    #[test]
    fn thin_delta_reports() {
        // thin_delta 0.9 between two devices of a pool with 64 KiB blocks.
        let xml = r#"<superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="100">
  <diff left="1" right="2">
    <same begin="0" length="2"/>
    <different begin="2" length="1"/>
    <left_only begin="5" length="1"/>
    <right_only begin="7" length="2"/>
  </diff>
</superblock>"#;
        assert_eq!(parse_thin_delta(xml), Some(3 * 64 * 1024));
        let same = r#"<superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="100">
  <diff left="1" right="2">
    <same begin="0" length="2"/>
  </diff>
</superblock>"#;
        assert_eq!(parse_thin_delta(same), Some(0));
        assert_eq!(parse_thin_delta("garbage"), None);
    }
}
