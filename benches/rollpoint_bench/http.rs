//! A minimal HTTP/1.1 client on the daemon's Unix socket, one kept-alive
//! connection, so that timing a REST call or a scrape measures the daemon
//! and not a process started per call (as `curl` would be). It reads
//! answers with a Content-Length, which is what the daemon's REST answers
//! carry.

use std::path::Path;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;

use crate::setup::Fallible;

pub struct Connection {
    stream: BufReader<UnixStream>,
}

impl Connection {
    pub async fn open(socket: &Path) -> Fallible<Connection> {
        Ok(Connection { stream: BufReader::new(UnixStream::connect(socket).await?) })
    }

    /// Sends one request and reads its answer: the status and the body.
    pub async fn call(&mut self, method: &str, path: &str, body: Option<&str>) -> Fallible<(u16, String)> {
        let body = body.unwrap_or("");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let stream = self.stream.get_mut();
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("{method} {path}: not an HTTP status line: {line:?}"))?;
        let mut length = None;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let length = length.ok_or_else(|| format!("{method} {path}: answer without a Content-Length"))?;
        let mut answer = vec![0_u8; length];
        self.stream.read_exact(&mut answer).await?;
        Ok((status, String::from_utf8(answer)?))
    }
}
