//! What the HTML inside an SVG's `<foreignObject>` may show that our drawing of the SVG
//! does not: resvg draws no HTML.
//!
//! A browser lays that HTML out with CSS and paints it in `<img>` (confirmed in headless
//! Chromium): embedded images side by side, an inline `<svg>` drawing, and pictures made of
//! boxes alone — a table of coloured cells, one box with a shadow per pixel, gradients with
//! a hard stop per pixel, a grid of form controls. An SVG whose HTML may show any of these
//! is refused as undrawable (the policy's `on_undecodable`); its embedded images are still
//! judged one by one.
//!
//! Not reasons: text (diagram tools write their labels as HTML), and a few painted boxes
//! (label backgrounds, borders). CSS can carry a picture's information in any property (a
//! colour, an opacity, a number per element fed to `calc()`), so painted boxes are
//! counted, not colours: every element that may paint, and every entry of a painted list
//! (shadows, background layers, gradient stops), against [`MAX_HTML_PAINT`]. Text draws a
//! picture too (full blocks coloured run by run, shades of block characters, emoji as
//! pixels), so each styled run of text counts as a box, and each character that is a
//! picture element on its own ([`is_picture_character`]) as one.

use super::{data_uris, is_image_uri};

/// Most painted boxes and list entries the HTML of one document may hold: a picture of
/// 16×16 cells. A label with a background counts one.
pub const MAX_HTML_PAINT: usize = 256;

const SVG_NAMESPACE: &str = "http://www.w3.org/2000/svg";

/// SVG elements that draw when an inline `<svg>` sits in the HTML.
const SVG_DRAWING: [&str; 10] = [
    "rect", "circle", "ellipse", "line", "polyline", "polygon", "path", "text", "image", "use",
];

/// CSS properties that paint a box or a list of them (vendor prefixes removed first).
const PAINT_PROPERTIES: [&str; 16] = [
    "background",
    "border",
    "outline",
    "box-shadow",
    "text-shadow",
    "column-rule",
    "accent-color",
    "fill",
    "stroke",
    "mask",
    "filter",
    "backdrop-filter",
    "text-decoration",
    "text-emphasis",
    "text-stroke",
    "list-style",
];

/// HTML and MathML attributes that paint.
const PAINT_ATTRIBUTES: [&str; 6] = [
    "bgcolor",
    "background",
    "border",
    "mathbackground",
    "frame",
    "rules",
];

/// HTML elements that style the text they hold with no CSS (a colour, a weight, a size).
const TEXT_STYLING_ELEMENTS: [&str; 12] = [
    "font", "b", "strong", "i", "em", "u", "s", "small", "big", "sub", "sup", "code",
];

/// HTML elements a browser paints with no CSS at all.
const PAINTED_ELEMENTS: [&str; 17] = [
    "input", "button", "select", "textarea", "progress", "meter", "hr", "mark", "fieldset",
    "canvas", "video", "audio", "iframe", "object", "embed", "img", "picture",
];

/// Why the HTML in `document` may show what our drawing does not, if it may.
pub fn unseen(document: &roxmltree::Document) -> Option<&'static str> {
    let html: Vec<roxmltree::Node> = document
        .descendants()
        .filter(|node| is_foreign_object(*node) && !node.ancestors().skip(1).any(is_foreign_object))
        .flat_map(|object| object.descendants().skip(1))
        .collect();
    if html.is_empty() {
        return None;
    }
    let shows_images = html.iter().any(|node| {
        node.attributes()
            .map(|a| a.value())
            .chain(node.text().filter(|_| node.is_text()))
            .any(|value| data_uris(value).any(is_image_uri))
    });
    if shows_images {
        return Some("HTML (foreignObject) that shows images");
    }
    let svg_drawing = html.iter().any(|node| {
        node.tag_name().namespace() == Some(SVG_NAMESPACE)
            && SVG_DRAWING.contains(&node.tag_name().name())
    });
    if svg_drawing {
        return Some("HTML (foreignObject) holding an SVG drawing");
    }
    if painted_boxes(document, &html) > MAX_HTML_PAINT {
        return Some("HTML (foreignObject) that paints a picture from styled boxes");
    }
    None
}

/// Whether `element` holds text of its own (a run a style may colour).
fn holds_text(element: roxmltree::Node) -> bool {
    element
        .children()
        .any(|child| child.is_text() && child.text().is_some_and(|t| !t.trim().is_empty()))
}

/// Whether `c` is a picture element on its own, drawn solid or in colour whatever the
/// style: block elements and shades (U+2580..259F), geometric shapes (U+25A0..25FF, and
/// the supplement U+1F780..1F7FF with the coloured squares and circles), and emoji
/// (pictographs in U+1F000..1FAFF, U+2600..27BF and U+2B00..2BFF).
fn is_picture_character(c: char) -> bool {
    matches!(u32::from(c), 0x2580..=0x25FF | 0x2600..=0x27BF | 0x2B00..=0x2BFF | 0x1F000..=0x1FAFF)
}

fn is_foreign_object(node: roxmltree::Node) -> bool {
    node.tag_name().name() == "foreignObject"
}

/// An upper bound on the boxes and list entries the HTML paints.
fn painted_boxes(document: &roxmltree::Document, html: &[roxmltree::Node]) -> usize {
    // A style sheet applies to the whole document, the HTML in it included; one we cannot
    // read (linked, imported, a processing instruction) may paint every element.
    let mut sheets = Paint::default();
    for style in document
        .descendants()
        .filter(|node| node.tag_name().name() == "style")
    {
        let text: String = style
            .descendants()
            .filter_map(|node| node.text().filter(|_| node.is_text()))
            .collect();
        sheets.add(Paint::of(&text));
    }
    sheets.paints |= html.iter().any(|node| node.tag_name().name() == "link")
        || document
            .descendants()
            .any(|node| node.pi().is_some_and(|pi| pi.target == "xml-stylesheet"));
    // A sheet that sets anything may style text by element, class or position.
    let sheets_style = sheets.paints || sheets.declarations > 0;
    let mut total = sheets.entries;
    for text in html
        .iter()
        .filter_map(|node| node.text().filter(|_| node.is_text()))
    {
        total = total.saturating_add(text.chars().filter(|&c| is_picture_character(c)).count());
    }
    for element in html.iter().filter(|node| node.is_element()) {
        let inline = element
            .attribute("style")
            .map(Paint::of)
            .unwrap_or_default();
        total = total.saturating_add(inline.entries);
        total = total.saturating_add(if sheets.paints {
            // The element and its ::before and ::after.
            3
        } else {
            usize::from(
                inline.paints
                    || PAINT_ATTRIBUTES
                        .iter()
                        .any(|name| element.has_attribute(*name))
                    || PAINTED_ELEMENTS.contains(&element.tag_name().name())
                    || (holds_text(*element)
                        && (sheets_style
                            || inline.declarations > 0
                            || element.has_attribute("color")
                            || TEXT_STYLING_ELEMENTS.contains(&element.tag_name().name()))),
            )
        });
    }
    total
}

/// What a piece of CSS (a style sheet or a `style` attribute) paints.
#[derive(Debug, Default, PartialEq)]
struct Paint {
    /// Whether any declaration paints.
    paints: bool,
    /// Entries of painted lists beyond the first: the commas in painting declarations (an
    /// upper bound on shadows, layers and gradient stops).
    entries: usize,
    /// Declarations of any property (each may style text: a colour, an opacity).
    declarations: usize,
}

impl Paint {
    fn of(css: &str) -> Paint {
        let css = without_comments(css);
        // An imported sheet is not read; escapes can spell any property.
        let mut paint = Paint {
            paints: css.contains("@import"),
            ..Paint::default()
        };
        for declaration in css.split([';', '{', '}']) {
            let Some((property, value)) = declaration.split_once(':') else {
                continue;
            };
            paint.declarations = paint.declarations.saturating_add(1);
            let property = property.trim().to_ascii_lowercase();
            let property = ["-webkit-", "-moz-", "-ms-", "-o-"]
                .iter()
                .find_map(|prefix| property.strip_prefix(prefix))
                .unwrap_or(&property);
            if property.contains('\\')
                || PAINT_PROPERTIES
                    .iter()
                    .any(|name| property.starts_with(name))
            {
                paint.paints = true;
                paint.entries = paint.entries.saturating_add(value.matches(',').count());
            }
        }
        paint
    }

    fn add(&mut self, other: Paint) {
        self.paints |= other.paints;
        self.entries = self.entries.saturating_add(other.entries);
        self.declarations = self.declarations.saturating_add(other.declarations);
    }
}

/// `css` with its `/* … */` comments removed (an unclosed one runs to the end, as in CSS).
fn without_comments(css: &str) -> String {
    let mut kept = String::with_capacity(css.len());
    let mut rest = css;
    while let Some(start) = rest.find("/*") {
        kept.push_str(&rest[..start]);
        rest = match rest[start + 2..].find("*/") {
            Some(end) => &rest[start + 2 + end + 2..],
            None => "",
        };
    }
    kept.push_str(rest);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(svg: &str) -> Option<&'static str> {
        unseen(&roxmltree::Document::parse(svg).unwrap())
    }

    fn in_html(html: &str) -> String {
        format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="200" height="200"><foreignObject width="200" height="200"><div xmlns="http://www.w3.org/1999/xhtml">{html}</div></foreignObject></svg>"#
        )
    }

    const BOXES: Option<&str> =
        Some("HTML (foreignObject) that paints a picture from styled boxes");

    #[test]
    fn diagram_labels_are_no_reason_to_refuse() {
        // As draw.io writes them: one foreignObject per label, 100 labels with backgrounds.
        let label = r#"<foreignObject width="80" height="20"><div xmlns="http://www.w3.org/1999/xhtml" style="display: flex; align-items: center; width: 78px;"><div style="box-sizing: border-box; font-size: 0; text-align: center;"><div style="display: inline-block; font-size: 12px; font-family: Helvetica; color: #000000; background-color: #ffffff; white-space: normal;">Label</div></div></div></foreignObject>"#;
        let svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="800" height="600"><rect width="10" height="10"/>{}</svg>"#,
            label.repeat(100)
        );
        assert_eq!(verdict(&svg), None);
        assert_eq!(verdict(&in_html("plain text, <b>bold</b>")), None);
        // No HTML at all.
        assert_eq!(
            verdict(r#"<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>"#),
            None
        );
    }

    #[test]
    fn pictures_made_of_boxes_are_refused() {
        // One box and a shadow per cell of a 17×17 picture.
        let shadows: Vec<String> = (0..289)
            .map(|i| format!("{}px {}px 0 #{:06x}", i % 17, i / 17, i * 977))
            .collect();
        let shadowed = format!(
            r#"<div style="width:1px;height:1px;box-shadow:{}"></div>"#,
            shadows.join(",")
        );
        assert_eq!(verdict(&in_html(&shadowed)), BOXES);
        // Prefixed and in a style sheet.
        let sheet = format!(
            "<style>.p{{-webkit-box-shadow:{}}}</style><div class='p'/>",
            shadows.join(",")
        );
        assert_eq!(verdict(&in_html(&sheet)), BOXES);
        // A table of coloured cells.
        let row = r##"<td bgcolor="#c08070" width="4" height="4"></td>"##.repeat(17);
        let table = format!("<table>{}</table>", format!("<tr>{row}</tr>").repeat(17));
        assert_eq!(verdict(&in_html(&table)), BOXES);
        // Rows of gradients with a hard stop per pixel.
        let stops: Vec<String> = (0..20)
            .map(|i| format!("#{:06x} {}px {}px", i * 4099, i, i + 1))
            .collect();
        let layer = format!("linear-gradient(90deg,{})", stops.join(","));
        let gradients = format!(
            r#"<div style="width:20px;height:20px;background:{}"></div>"#,
            vec![layer; 20].join(",")
        );
        assert_eq!(verdict(&in_html(&gradients)), BOXES);
        // A grid of checkboxes, painted with no CSS.
        let boxes = r#"<input type="checkbox" checked="checked"/>"#.repeat(300);
        assert_eq!(verdict(&in_html(&boxes)), BOXES);
    }

    #[test]
    fn a_painting_style_sheet_counts_every_element() {
        // The information can sit in any property of each element (here an opacity).
        let cells = r#"<div class="c" style="opacity:.4"/>"#.repeat(100);
        let painted = format!("<style>.c{{background:black}}</style>{cells}");
        assert_eq!(verdict(&in_html(&painted)), BOXES);
        // The same sheet at the SVG's top level applies to the HTML as well.
        let top = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg"><style>.c{{ background : black }}</style><foreignObject><div xmlns="http://www.w3.org/1999/xhtml">{cells}</div></foreignObject></svg>"#
        );
        assert_eq!(verdict(&top), BOXES);
        // Escapes, comments and sheets we cannot read.
        for sheet in [
            r"<style>.c{b\61 ckground:black}</style>",
            "<style>.c{/* x */background/**/:black}</style>",
            "<style>@import url(data:text/css,x);</style>",
            r#"<link rel="stylesheet" href="data:text/css,.c{background:red}"/>"#,
        ] {
            assert_eq!(
                verdict(&in_html(&format!("{sheet}{cells}"))),
                BOXES,
                "{sheet}"
            );
        }
        // A sheet that only sets text is no reason.
        let text = format!("<style>.c{{color:red;font-size:20px}}</style>{cells}");
        assert_eq!(verdict(&in_html(&text)), None);
    }

    #[test]
    fn pictures_made_of_text_are_refused() {
        // Full blocks coloured run by run: inline, by `<font>`, by classes of a sheet.
        let runs: String = (0..300)
            .map(|i| {
                format!(
                    r##"<span style="color:#{:06x}">&#x2588;&#x2588;</span>"##,
                    i * 977
                )
            })
            .collect();
        assert_eq!(verdict(&in_html(&runs)), BOXES);
        let fonts =
            r##"<font color="#804020">&#x2588;</font><font color="#ffe0c0">&#x2588;</font>"##
                .repeat(150);
        assert_eq!(verdict(&in_html(&fonts)), BOXES);
        let classes = format!(
            "<style>.r{{color:red}}.b{{color:blue}}</style>{}",
            r#"<span class="r">&#x2588;</span><span class="b">&#x2588;</span>"#.repeat(150)
        );
        assert_eq!(verdict(&in_html(&classes)), BOXES);
        // Emoji as pixels, and shades of one colour, in a single run of text.
        assert_eq!(
            verdict(&in_html(&"&#x1F7E5;&#x1F7E7;&#x1F7E8;".repeat(100))),
            BOXES
        );
        assert_eq!(
            verdict(&in_html(&"&#x2591;&#x2592;&#x2593;&#x2588;".repeat(80))),
            BOXES
        );
        // A few emoji and coloured words in a label are no reason.
        let label = r#"<p>Done &#x2705; <span style="color:green">passed</span> &#x1F600;</p>"#;
        assert_eq!(verdict(&in_html(&label.repeat(20))), None);
    }

    #[test]
    fn an_inline_svg_drawing_is_refused() {
        let nested = r#"<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40"><path d="M0 0h40v40z"/></svg>"#;
        assert_eq!(
            verdict(&in_html(nested)),
            Some("HTML (foreignObject) holding an SVG drawing")
        );
        // HTML without its namespace is unknown SVG, which a browser does not draw.
        let unnamed = r#"<svg xmlns="http://www.w3.org/2000/svg"><foreignObject><div>text</div></foreignObject></svg>"#;
        assert_eq!(verdict(unnamed), None);
    }

    #[test]
    fn css_is_read_declaration_by_declaration() {
        assert_eq!(
            Paint::of("color: red; background-image: linear-gradient(red, blue)"),
            Paint {
                paints: true,
                entries: 1,
                declarations: 2
            }
        );
        assert!(!Paint::of("a:hover { color: red }").paints);
        assert_eq!(without_comments("a/*b*/c/*d"), "ac");
    }
}
