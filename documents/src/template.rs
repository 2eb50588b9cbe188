//! `{{ name }}` placeholders: splits a document string once, at parse time,
//! into literal text and parameter references, and renders it by
//! concatenation. Values are inserted, never scanned again, so a parameter
//! value that itself contains `{{ other }}` stays literal — unlike the SSM
//! agent, which substitutes parameter after parameter over the same string.
//!
//! A placeholder is `{{`, optional ASCII blanks, a name of `[A-Za-z0-9_]`,
//! optional blanks, `}}` (the agent's form). Anything else between braces —
//! `{{.Names}}` in a docker format string, `{{ssm:/path}}` — is literal text.

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Segment {
    Text(String),
    Param(String),
}

/// A document string split into text and placeholders.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct Template {
    segments: Vec<Segment>,
}

/// Whether `c` may appear in a parameter name.
pub(crate) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl Template {
    pub(crate) fn parse(text: &str) -> Template {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            let after = &rest[open + 2..];
            match placeholder(after) {
                Some((name, consumed)) => {
                    literal.push_str(&rest[..open]);
                    if !literal.is_empty() {
                        segments.push(Segment::Text(std::mem::take(&mut literal)));
                    }
                    segments.push(Segment::Param(name.to_owned()));
                    rest = &after[consumed..];
                }
                None => {
                    // Keep one brace and rescan from the next, so "{{{ a }}" still finds "{{ a }}".
                    literal.push_str(&rest[..=open]);
                    rest = &rest[open + 1..];
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            segments.push(Segment::Text(literal));
        }
        Template { segments }
    }

    /// The parameter name when the whole string is exactly one placeholder:
    /// such a value takes the parameter's value as is, lists included.
    pub(crate) fn whole_param(&self) -> Option<&str> {
        match self.segments.as_slice() {
            [Segment::Param(name)] => Some(name),
            _ => None,
        }
    }

    /// Names of the parameters referenced, in order of appearance.
    pub(crate) fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(name) => Some(name.as_str()),
            Segment::Text(_) => None,
        })
    }

    /// The text with each placeholder replaced by `value(name)`.
    pub(crate) fn render<E>(
        &self,
        mut value: impl FnMut(&str) -> Result<String, E>,
    ) -> Result<String, E> {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Text(text) => out.push_str(text),
                Segment::Param(name) => out.push_str(&value(name)?),
            }
        }
        Ok(out)
    }
}

/// Parses `  name  }}` at the start of `s`; returns the name and the bytes consumed.
fn placeholder(s: &str) -> Option<(&str, usize)> {
    let blanks = |t: &str| {
        t.len()
            - t.trim_start_matches(|c: char| c.is_ascii_whitespace())
                .len()
    };
    let lead = blanks(s);
    let body = &s[lead..];
    let name_len = body.len() - body.trim_start_matches(is_name_char).len();
    if name_len == 0 {
        return None;
    }
    let after_name = &body[name_len..];
    let trail = blanks(after_name);
    after_name[trail..]
        .starts_with("}}")
        .then(|| (&body[..name_len], lead + name_len + trail + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Segment {
        Segment::Text(s.to_owned())
    }

    fn param(s: &str) -> Segment {
        Segment::Param(s.to_owned())
    }

    #[test]
    fn splits_text_and_placeholders() {
        let cases: Vec<(&str, Vec<Segment>)> = vec![
            ("", vec![]),
            ("plain", vec![text("plain")]),
            ("{{ commands }}", vec![param("commands")]),
            ("{{commands}}", vec![param("commands")]),
            ("{{\t a_1 \n}}", vec![param("a_1")]),
            (
                "cd {{ dir }} && ls",
                vec![text("cd "), param("dir"), text(" && ls")],
            ),
            ("{{a}}{{b}}", vec![param("a"), param("b")]),
            (
                "docker ps --format '{{.Names}}'",
                vec![text("docker ps --format '{{.Names}}'")],
            ),
            ("{{ssm:/db/password}}", vec![text("{{ssm:/db/password}}")]),
            ("{{ a b }}", vec![text("{{ a b }}")]),
            ("{{ }}", vec![text("{{ }}")]),
            ("{{{ a }}}", vec![text("{"), param("a"), text("}")]),
            ("{{ a }", vec![text("{{ a }")]),
            ("é{{ a }}ü", vec![text("é"), param("a"), text("ü")]),
        ];
        for (input, want) in cases {
            assert_eq!(Template::parse(input).segments, want, "{input:?}");
        }
    }

    #[test]
    fn whole_param_only_for_a_lone_placeholder() {
        let cases = [
            ("{{ commands }}", Some("commands")),
            ("{{commands}}", Some("commands")),
            (" {{ commands }}", None),
            ("{{ a }}{{ b }}", None),
            ("commands", None),
        ];
        for (input, want) in cases {
            assert_eq!(Template::parse(input).whole_param(), want, "{input:?}");
        }
    }

    #[test]
    fn render_never_rescans_values() {
        let t = Template::parse("echo {{ a }} {{ b }}");
        let out = t.render(|name| -> Result<String, ()> {
            Ok(match name {
                "a" => "{{ b }}".to_owned(),
                _ => "B".to_owned(),
            })
        });
        assert_eq!(out, Ok("echo {{ b }} B".to_owned()));
    }
}
