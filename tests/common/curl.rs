//! `curl` as the page uses it, against the daemon's REST API: over the Unix
//! socket (`--unix-socket`), loopback TCP with a bearer token, or any URL
//! (a run's `$SNAP_URL`, credential in its userinfo).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

/// Where curl sends its requests.
#[derive(Clone)]
pub enum Via {
    Socket(PathBuf),
    Tcp {
        port: u16,
        token: Option<String>,
    },
    /// Paths are appended to this URL as is.
    Url(String),
}

impl Via {
    pub fn base_args(&self, command: &mut Command) -> String {
        match self {
            Via::Socket(path) => {
                command.arg("--unix-socket").arg(path);
                "http://localhost".to_owned()
            }
            Via::Tcp { port, token } => {
                if let Some(token) = token {
                    command.arg("-H").arg(format!("Authorization: Bearer {token}"));
                }
                format!("http://127.0.0.1:{port}")
            }
            Via::Url(url) => url.clone(),
        }
    }
}

/// `curl -X method path [-d body]`: the HTTP status and the body as JSON.
pub fn curl(via: &Via, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    curl_with(via, method, path, body.map(|b| b.as_bytes().to_vec()), &[])
}

pub fn curl_with(via: &Via, method: &str, path: &str, body: Option<Vec<u8>>, headers: &[&str]) -> (u16, Value) {
    let mut command = Command::new("curl");
    command.args(["-sS", "--max-time", "120", "-o", "-", "-w", "\n%{http_code}", "-X", method]);
    let base = via.base_args(&mut command);
    for header in headers {
        command.arg("-H").arg(header);
    }
    if body.is_some() {
        // As on the page: `curl -d` (application/x-www-form-urlencoded).
        command.arg("--data-binary").arg("@-");
    }
    command.arg(format!("{base}{path}")).stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = command.spawn().expect("run curl");
    if let Some(body) = body {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        // A refused body may close the connection early: a broken pipe is an answer too.
        let _ = stdin.write_all(&body);
    }
    let output = child.wait_with_output().expect("curl output");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let (body, code) = text.rsplit_once('\n').expect("status line");
    let code: u16 = code.trim().parse().unwrap_or_else(|_| panic!("curl {method} {path}: {text}"));
    let value = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or(Value::String(body.into()))
    };
    (code, value)
}
