//! Cutting a stream into documents exactly like `k8s.io/apimachinery`'s `YAMLReader`.

use super::{Location, YamlError};

/// One document as cut by the k8s reader: its lines, each terminated by `\n`.
pub(super) struct Chunk {
    pub(super) text: String,
    pub(super) first_line: usize,
}

/// The k8s `YAMLReader` over Go's `bufio.Reader.ReadLine`: lines end at `\n`, a `\r` right
/// before it is dropped, and a final line without newline still counts.
pub(super) struct DocumentReader<'a> {
    rest: &'a str,
    line_number: usize,
    documents: usize,
}

impl<'a> DocumentReader<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Self {
            rest: text,
            line_number: 0,
            documents: 0,
        }
    }

    fn next_line(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        self.line_number += 1;
        match self.rest.find('\n') {
            Some(end) => {
                let line = &self.rest[..end];
                self.rest = &self.rest[end + 1..];
                Some(line.strip_suffix('\r').unwrap_or(line))
            }
            None => {
                let line = self.rest;
                self.rest = "";
                Some(line)
            }
        }
    }

    pub(super) fn next_chunk(&mut self) -> Result<Option<Chunk>, YamlError> {
        let mut text = String::new();
        let mut first_line = 0;
        while let Some(line) = self.next_line() {
            if let Some(after) = line.strip_prefix("---") {
                let found = after.trim();
                if !found.is_empty() && !found.starts_with('#') {
                    return Err(YamlError::InvalidSeparator {
                        at: Location {
                            document: self.documents + 1,
                            line: self.line_number,
                            column: 1,
                        },
                        found: found.to_string(),
                    });
                }
                if !text.is_empty() {
                    self.documents += 1;
                    return Ok(Some(Chunk { text, first_line }));
                }
                // A separator with nothing buffered yet is kept as the chunk's first line, so
                // `---` alone (or `---` followed by comments) decodes as an explicit null
                // document, exactly as in the k8s reader.
            }
            if text.is_empty() {
                first_line = self.line_number;
            }
            text.push_str(line);
            text.push('\n');
        }
        if text.is_empty() {
            return Ok(None);
        }
        self.documents += 1;
        Ok(Some(Chunk { text, first_line }))
    }
}
