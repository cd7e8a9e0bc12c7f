//! Server-Sent Events framing, shared by the host (live streams) and the
//! conformance kit (recorded streams), so both frame bytes the same way.
//!
//! Follows the WHATWG event-stream rules: lines end with LF, CRLF or CR;
//! `:` starts a comment; one space after the field's colon is dropped; `data`
//! lines are joined with `\n`; a blank line dispatches; an event without any
//! `data` line is not dispatched; `id` and `retry` are ignored; an unfinished
//! event at the end of the stream is dropped.

use crate::SseEvent;

/// The default longest line accepted (1 MiB).
pub const DEFAULT_MAX_LINE: usize = 1 << 20;

/// The framing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line or an event's data grew past the limit.
    #[error("server-sent event larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

/// An incremental SSE parser: feed it bytes as they arrive.
#[derive(Debug)]
pub struct SseParser {
    buf: Vec<u8>,
    scanned: usize,
    skip_lf: bool,
    at_start: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    max_line: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser with the default limits.
    pub fn new() -> Self {
        Self::with_max_line(DEFAULT_MAX_LINE)
    }

    /// A parser that refuses lines (and event data) longer than `max_line` bytes.
    pub fn with_max_line(max_line: usize) -> Self {
        Self {
            buf: Vec::new(),
            scanned: 0,
            skip_lf: false,
            at_start: true,
            event: None,
            data: String::new(),
            has_data: false,
            max_line,
        }
    }

    /// Parses a whole recorded stream.
    pub fn parse_all(stream: &str) -> Result<Vec<SseEvent>, SseError> {
        Self::new().push(stream.as_bytes())
    }

    /// Feeds bytes; returns the events completed by them.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut events = Vec::new();
        let mut chunk = chunk;
        if self.skip_lf && !chunk.is_empty() {
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
            self.skip_lf = false;
        }
        self.buf.extend_from_slice(chunk);
        if self.at_start {
            if self.buf.len() < 3 && b"\xEF\xBB\xBF".starts_with(&self.buf) {
                return Ok(events);
            }
            if self.buf.starts_with(b"\xEF\xBB\xBF") {
                self.buf.drain(..3);
            }
            self.at_start = false;
        }
        let mut line_start = 0;
        let mut i = self.scanned;
        while i < self.buf.len() {
            let b = self.buf[i];
            if b == b'\n' || b == b'\r' {
                let line = String::from_utf8_lossy(&self.buf[line_start..i]).into_owned();
                self.process_line(&line, &mut events)?;
                if b == b'\r' {
                    match self.buf.get(i + 1) {
                        Some(b'\n') => i += 1,
                        Some(_) => {}
                        None => self.skip_lf = true,
                    }
                }
                line_start = i + 1;
            }
            i += 1;
        }
        self.buf.drain(..line_start);
        self.scanned = self.buf.len();
        if self.buf.len() > self.max_line {
            return Err(SseError::TooLarge { limit: self.max_line });
        }
        Ok(events)
    }

    fn process_line(&mut self, line: &str, events: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if line.is_empty() {
            if self.has_data {
                let mut data = std::mem::take(&mut self.data);
                if data.ends_with('\n') {
                    data.pop();
                }
                events.push(SseEvent {
                    event: self.event.take(),
                    data,
                });
            }
            self.event = None;
            self.data.clear();
            self.has_data = false;
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
                if self.data.len() > self.max_line {
                    return Err(SseError::TooLarge { limit: self.max_line });
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    #[test]
    fn frames_events_and_fields() {
        let text = "event: a\ndata: {\"x\":1}\n\n: comment\ndata:one\ndata: two\nid: 3\n\nevent: empty\n\n";
        let events = SseParser::parse_all(text).unwrap();
        assert_eq!(events, vec![ev(Some("a"), "{\"x\":1}"), ev(None, "one\ntwo")]);
    }

    #[test]
    fn any_chunking_and_line_ending_gives_the_same_events() {
        let lf = "event: a\ndata: hello wörld\n\ndata: [DONE]\n\n";
        let crlf = lf.replace('\n', "\r\n");
        let cr = lf.replace('\n', "\r");
        let expected = SseParser::parse_all(lf).unwrap();
        assert_eq!(expected.len(), 2);
        for text in [lf.to_owned(), crlf, cr] {
            let bytes = text.as_bytes();
            for split in 1..4 {
                let mut parser = SseParser::new();
                let mut got = Vec::new();
                for chunk in bytes.chunks(split) {
                    got.extend(parser.push(chunk).unwrap());
                }
                assert_eq!(got, expected, "split {split} of {text:?}");
            }
        }
    }

    #[test]
    fn unfinished_event_is_not_dispatched_and_size_is_bounded() {
        let events = SseParser::parse_all("data: a\n\ndata: partial").unwrap();
        assert_eq!(events, vec![ev(None, "a")]);
        let mut parser = SseParser::with_max_line(16);
        assert!(parser.push(&[b'x'; 32]).is_err());
    }

    #[test]
    fn bom_is_skipped() {
        let events = SseParser::parse_all("\u{feff}data: a\n\n").unwrap();
        assert_eq!(events, vec![ev(None, "a")]);
    }
}
