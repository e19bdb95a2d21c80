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

#[cfg(test)]
mod tests {
    use super::*;

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
