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
                let token = after[..end].trim_end();
                // Anything else must be quoted; parsers split it differently.
                if token.is_empty() || !token.bytes().all(is_token_byte) {
                    return None;
                }
                (token.to_string(), &after[end..])
            }
        };
        found.push((name.to_ascii_lowercase(), parsed));
        rest = remainder.trim_start_matches([' ', '\t']);
        if !(rest.is_empty() || rest.starts_with(';')) {
            return None;
        }
    }
}

/// RFC 9110 `tchar`: what an unquoted parameter value (or a token) is made of.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The quoted string that `text` continues (after its opening quote), and what follows
/// its closing quote. A backslash is itself: browsers send form-data filenames so (a
/// Windows path keeps its backslashes; a quote is sent as `%22`). A backslash before a
/// quote is refused: some parsers end the string there, others read an escaped quote.
fn unquote(text: &str) -> Option<(String, &str)> {
    let end = text.find('"')?;
    if text[..end].ends_with('\\') {
        return None;
    }
    Some((text[..end].to_string(), &text[end + 1..]))
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
            pairs(r#"form-data; name="a;b"; filename="C:\dir\d.png""#),
            [
                ("name".into(), "a;b".into()),
                ("filename".into(), r#"C:\dir\d.png"#.into())
            ]
        );
        assert_eq!(pairs("text/plain"), Vec::<(String, String)>::new());
        assert_eq!(pairs("text/plain;"), Vec::<(String, String)>::new());
        for malformed in [
            "multipart/form-data; boundary",
            r#"form-data; name="unterminated"#,
            r#"form-data; name="a"junk"#,
            r#"form-data; filename=a b.png"#,
            r#"form-data; filename="a \"b\".png""#,
            r#"form-data; filename=a"b"#,
            "form-data; name=",
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
