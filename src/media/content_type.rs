//! What a `Content-Type` header claims: its MIME essence, and whether that is an image.
//!
//! Headers are only ever a claim (the bytes decide what is an image, [`super::format`]);
//! the claim still matters where the bytes are not a raster image we read: a body under
//! `image/*` is an image we failed to read, not a page.

/// The MIME essence of a `Content-Type` value: type and subtype, lower-cased, without
/// parameters (`Image/PNG; q=1` → `image/png`).
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether the header claims an image (`image/*`).
pub fn claims_image(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|value| essence(value).starts_with("image/"))
}

/// The parameters of a header value such as `Content-Type` or `Content-Disposition`
/// (RFC 9110 §5.6.6): `(name lower-cased, value)` in order, quoted values unquoted.
/// `None` when the parameter list is malformed (an unterminated quote, a parameter without
/// `=`): the caller refuses what it cannot read unambiguously.
pub fn parameters(value: &str) -> Option<Vec<(String, String)>> {
    let mut rest = value.split_once(';').map_or("", |(_, rest)| rest);
    let mut found = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            return Some(found);
        }
        let (name, after) = rest.split_once('=')?;
        let name = name.trim();
        if name.is_empty() || name.contains([' ', '\t', ';', '"']) {
            return None;
        }
        let after = after.trim_start_matches([' ', '\t']);
        let (parsed, remainder) = match after.strip_prefix('"') {
            Some(quoted) => unquote(quoted)?,
            None => {
                let end = after.find(';').unwrap_or(after.len());
                (after[..end].trim_end().to_string(), &after[end..])
            }
        };
        found.push((name.to_ascii_lowercase(), parsed));
        rest = remainder.trim_start_matches([' ', '\t']);
        if !(rest.is_empty() || rest.starts_with(';')) {
            return None;
        }
    }
}

/// The quoted string that `text` continues (after its opening quote), and what follows
/// its closing quote.
fn unquote(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[i + 1..])),
            '\\' => value.push(chars.next()?.1),
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_read_quoted_or_not() {
        let pairs = |v| parameters(v).unwrap();
        assert_eq!(
            pairs("multipart/form-data; Boundary=----abc; charset=utf-8"),
            [
                ("boundary".into(), "----abc".into()),
                ("charset".into(), "utf-8".into())
            ]
        );
        assert_eq!(
            pairs(r#"form-data; name="a;b"; filename="c \"d\".png""#),
            [
                ("name".into(), "a;b".into()),
                ("filename".into(), r#"c "d".png"#.into())
            ]
        );
        assert_eq!(pairs("text/plain"), Vec::<(String, String)>::new());
        assert_eq!(pairs("text/plain;"), Vec::<(String, String)>::new());
        for malformed in [
            "multipart/form-data; boundary",
            r#"form-data; name="unterminated"#,
            r#"form-data; name="a"junk"#,
        ] {
            assert_eq!(parameters(malformed), None, "{malformed}");
        }
    }

    #[test]
    fn essence_drops_parameters_case_and_space() {
        assert_eq!(essence("Image/AVIF; q=1"), "image/avif");
        assert_eq!(essence("  text/html;charset=utf-8"), "text/html");
        assert_eq!(essence(""), "");
    }

    #[test]
    fn only_image_types_claim_an_image() {
        assert!(claims_image(Some("image/jpeg")));
        assert!(claims_image(Some(" IMAGE/svg+xml; charset=utf-8")));
        assert!(!claims_image(Some("text/html")));
        assert!(!claims_image(Some("application/octet-stream")));
        assert!(!claims_image(Some("imagex/png")));
        assert!(!claims_image(None));
    }
}
