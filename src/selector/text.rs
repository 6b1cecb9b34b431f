//! Label selectors written as text, the API server's `labelSelector` query syntax
//! (`app=web,tier in (a,b),!legacy,env!=prod`), as `--target-label-selector` takes them.
//!
//! kubelambda hands the text to the API server, which applies it; this module only checks it at
//! startup, so that a typo stops the process with a message naming the flag instead of every
//! watch failing later with an HTTP 400. It accepts the same grammar as Kubernetes' own parser
//! (`k8s.io/apimachinery/pkg/labels.Parse`), including the numeric `<` and `>` operators.

/// Why a selector text was rejected. Byte offsets count from the start of the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("at byte {at}: expected {expected}, found {found}")]
    Syntax {
        at: usize,
        expected: &'static str,
        found: String,
    },
    #[error("{operator} needs at least one value, e.g. `{key} {operator} (a,b)`")]
    EmptyList { key: String, operator: &'static str },
    #[error("label key {key:?}: {reason}")]
    Key { key: String, reason: &'static str },
    #[error("label value {value:?}: {reason}")]
    Value { value: String, reason: &'static str },
    #[error("{key} {operator} {value}: the value must be an integer")]
    NotInteger {
        key: String,
        operator: &'static str,
        value: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token<'a> {
    Word(&'a str),
    In,
    NotIn,
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    Greater,
    Less,
    Comma,
    Open,
    Close,
    End,
}

impl Token<'_> {
    fn describe(&self) -> String {
        match self {
            Token::Word(w) => format!("{w:?}"),
            Token::In => "`in`".into(),
            Token::NotIn => "`notin`".into(),
            Token::Not => "`!`".into(),
            Token::Equals => "`=`".into(),
            Token::DoubleEquals => "`==`".into(),
            Token::NotEquals => "`!=`".into(),
            Token::Greater => "`>`".into(),
            Token::Less => "`<`".into(),
            Token::Comma => "`,`".into(),
            Token::Open => "`(`".into(),
            Token::Close => "`)`".into(),
            Token::End => "the end".into(),
        }
    }
}

fn is_special(c: char) -> bool {
    c.is_whitespace() || matches!(c, '!' | '=' | ',' | '(' | ')' | '<' | '>')
}

/// Splits `text` into (byte offset, token), ending with [`Token::End`].
fn tokens(text: &str) -> Vec<(usize, Token<'_>)> {
    let mut out = Vec::new();
    let mut rest = text.char_indices().peekable();
    while let Some((at, c)) = rest.next() {
        let token = match c {
            c if c.is_whitespace() => continue,
            ',' => Token::Comma,
            '(' => Token::Open,
            ')' => Token::Close,
            '>' => Token::Greater,
            '<' => Token::Less,
            '!' | '=' => {
                let doubled = rest.next_if(|&(_, next)| next == '=').is_some();
                match (c, doubled) {
                    ('!', true) => Token::NotEquals,
                    ('!', false) => Token::Not,
                    (_, true) => Token::DoubleEquals,
                    (_, false) => Token::Equals,
                }
            }
            _ => {
                let mut end = at + c.len_utf8();
                while let Some(&(i, next)) = rest.peek() {
                    if is_special(next) {
                        break;
                    }
                    end = i + next.len_utf8();
                    rest.next();
                }
                match &text[at..end] {
                    "in" => Token::In,
                    "notin" => Token::NotIn,
                    word => Token::Word(word),
                }
            }
        };
        out.push((at, token));
    }
    out.push((text.len(), Token::End));
    out
}

struct Parser<'a> {
    tokens: Vec<(usize, Token<'a>)>,
    next: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> &Token<'a> {
        &self.tokens[self.next.min(self.tokens.len() - 1)].1
    }

    fn take(&mut self) -> (usize, Token<'a>) {
        let item = self.tokens[self.next.min(self.tokens.len() - 1)].clone();
        self.next += 1;
        item
    }

    fn error(at: usize, expected: &'static str, found: &Token<'_>) -> QueryError {
        QueryError::Syntax {
            at,
            expected,
            found: found.describe(),
        }
    }

    fn key(&mut self) -> Result<&'a str, QueryError> {
        match self.take() {
            (_, Token::Word(key)) => {
                check_key(key)?;
                Ok(key)
            }
            (at, other) => Err(Self::error(at, "a label key", &other)),
        }
    }

    /// A value after `=`, `==` or `!=`; empty when the requirement ends there (`key=`).
    fn value(&mut self) -> Result<&'a str, QueryError> {
        match self.peek() {
            Token::Comma | Token::End => Ok(""),
            _ => match self.take() {
                (_, Token::Word(value)) => {
                    check_value(value)?;
                    Ok(value)
                }
                (at, other) => Err(Self::error(at, "a label value", &other)),
            },
        }
    }

    /// `(a, b, …)` after `in` or `notin`.
    fn values(&mut self, key: &str, operator: &'static str) -> Result<(), QueryError> {
        match self.take() {
            (_, Token::Open) => {}
            (at, other) => return Err(Self::error(at, "`(`", &other)),
        }
        let mut count = 0;
        loop {
            match self.take() {
                (_, Token::Word(value)) => {
                    check_value(value)?;
                    count += 1;
                    match self.take() {
                        (_, Token::Comma) => continue,
                        (_, Token::Close) => break,
                        (at, other) => return Err(Self::error(at, "`,` or `)`", &other)),
                    }
                }
                (_, Token::Close) => break,
                (at, other) => return Err(Self::error(at, "a label value or `)`", &other)),
            }
        }
        if count == 0 {
            return Err(QueryError::EmptyList {
                key: key.to_owned(),
                operator,
            });
        }
        Ok(())
    }

    fn requirement(&mut self) -> Result<(), QueryError> {
        if self.peek() == &Token::Not {
            self.take();
            self.key()?;
            return Ok(());
        }
        let key = self.key()?;
        match self.peek().clone() {
            Token::Comma | Token::End => Ok(()),
            Token::Equals | Token::DoubleEquals | Token::NotEquals => {
                self.take();
                self.value().map(|_| ())
            }
            Token::In => {
                self.take();
                self.values(key, "in")
            }
            Token::NotIn => {
                self.take();
                self.values(key, "notin")
            }
            Token::Greater | Token::Less => {
                let operator = if self.take().1 == Token::Greater {
                    ">"
                } else {
                    "<"
                };
                match self.take() {
                    (_, Token::Word(value)) if value.parse::<i64>().is_ok() => Ok(()),
                    (_, Token::Word(value)) => Err(QueryError::NotInteger {
                        key: key.to_owned(),
                        operator,
                        value: value.to_owned(),
                    }),
                    (at, other) => Err(Self::error(at, "an integer", &other)),
                }
            }
            other => {
                let at = self.tokens[self.next].0;
                Err(Self::error(
                    at,
                    "`=`, `==`, `!=`, `in`, `notin`, `<`, `>`, `,` or the end",
                    &other,
                ))
            }
        }
    }
}

/// Checks `text` as a label selector in the API server's query syntax. The empty text (and one
/// of only spaces) selects everything.
pub fn validate_query(text: &str) -> Result<(), QueryError> {
    let mut parser = Parser {
        tokens: tokens(text),
        next: 0,
    };
    if parser.peek() == &Token::End {
        return Ok(());
    }
    loop {
        parser.requirement()?;
        match parser.take() {
            (_, Token::Comma) => continue,
            (_, Token::End) => return Ok(()),
            (at, other) => return Err(Parser::error(at, "`,` or the end", &other)),
        }
    }
}

/// A label name, or the part after the `/` of a key: 1–63 characters, letters, digits, `-`, `_`
/// and `.`, starting and ending with a letter or digit.
fn is_label_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A DNS subdomain (RFC 1123): at most 253 characters, lowercase letters, digits, `-` and `.`,
/// starting and ending with a letter or digit.
fn is_dns_subdomain(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 253
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
        && s.split('.')
            .all(|part| !part.is_empty() && !part.starts_with('-') && !part.ends_with('-'))
}

fn check_key(key: &str) -> Result<(), QueryError> {
    let bad = |reason| {
        Err(QueryError::Key {
            key: key.to_owned(),
            reason,
        })
    };
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            if !is_dns_subdomain(prefix) {
                return bad("the prefix before `/` must be a DNS subdomain (e.g. example.com)");
            }
            name
        }
        None => key,
    };
    if !is_label_name(name) {
        return bad(
            "the name must be 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        );
    }
    Ok(())
}

fn check_value(value: &str) -> Result<(), QueryError> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(QueryError::Value {
            value: value.to_owned(),
            reason: "must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_selector_syntax_is_accepted() {
        for text in [
            "",
            "  ",
            "app",
            "!legacy",
            "app=web",
            "app==web",
            "app!=web",
            "app=",
            "app = web , tier in (a, b),!legacy",
            "env notin (prod)",
            "example.com/team=infra",
            "replicas>3,replicas<-1",
            "metacontroller.k8s.io/instance=one,x in (a,b,c)",
        ] {
            assert_eq!(validate_query(text), Ok(()), "{text:?}");
        }
    }

    #[test]
    fn errors_say_where_and_what() {
        assert_eq!(
            validate_query("app in (a,b"),
            Err(QueryError::Syntax {
                at: 11,
                expected: "`,` or `)`",
                found: "the end".into()
            })
        );
        assert_eq!(
            validate_query("app=web,"),
            Err(QueryError::Syntax {
                at: 8,
                expected: "a label key",
                found: "the end".into()
            })
        );
        assert_eq!(
            validate_query("app web"),
            Err(QueryError::Syntax {
                at: 4,
                expected: "`=`, `==`, `!=`, `in`, `notin`, `<`, `>`, `,` or the end",
                found: "\"web\"".into()
            })
        );
        assert_eq!(
            validate_query("app in ()"),
            Err(QueryError::EmptyList {
                key: "app".into(),
                operator: "in"
            })
        );
        assert!(matches!(
            validate_query("-bad=x"),
            Err(QueryError::Key { .. })
        ));
        assert!(matches!(
            validate_query("Example.com/x=y"),
            Err(QueryError::Key { .. })
        ));
        assert!(matches!(
            validate_query("a=b/c"),
            Err(QueryError::Value { .. })
        ));
        assert_eq!(
            validate_query("n>three").map_err(|e| e.to_string()),
            Err("n > three: the value must be an integer".into())
        );
    }
}
