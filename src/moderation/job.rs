//! A whole image handed to a sibling instance (the images of one upload are judged in
//! parallel, one instance each): the policy it is judged by and its bytes. The sibling
//! answers with the [`Moderation`] in the verdict cache's record form.
//!
//! A JPEG whose decode one instance began and stopped (its CPU ran short) goes as a
//! resumed job: the decoder's state (`media::jpeg`'s `EMD2` or `EMP2`) travels with it,
//! and the sibling decodes on from there. The bytes that decode will not read (the
//! entropy-coded data of the rows already decoded) are left out, and arrive as zeros:
//! reading a job costs the sibling CPU by the megabyte, and halfway through a 12 MP
//! photo half of it is behind the decoder.
//!
//! An SVG's drawing goes as a drawing job: the sibling draws the SVG and judges the
//! drawing only (the coordinator judges the rasters it embeds meanwhile).
//!
//! A JPEG XL too costly for one instance goes out in parts, as region jobs: the sibling
//! renders that region of the image and answers with its samples
//! (`media::decode::jxl_parts`), not with a moderation.
//!
//! ```text
//! job:     "EMJ1" | policy JSON length: u32 LE | policy JSON | image bytes
//! region:  "EMT1" | policy JSON length: u32 LE | policy JSON | left, top, width,
//!                 | height: u32 LE each | JPEG XL bytes
//! drawing: "EMS1" | policy JSON length: u32 LE | policy JSON | SVG bytes
//! resumed: "EMR2" | policy JSON length: u32 LE | policy JSON
//!                 | decode state length: u32 LE | decode state
//!                 | image length: u32 LE | spans left out: u32 LE, each start and
//!                 | length: u32 LE | the image's bytes outside them, in order
//! answer:  "EMV1" | record metadata length: u32 LE | metadata | rewritten image (or empty)
//! ```
//!
//! The policy travels with the job so the sibling judges by exactly the policy the
//! coordinator chose for the request (per route, once routes have policies); it is
//! validated again on arrival.

use super::handoff::HandoffError;
use super::record;
use super::Moderation;
use crate::media::decode;
use crate::media::decode::jxl_parts::Region;
use crate::policy::Policy;
use std::borrow::Cow;
use std::ops::Range;

const JOB: &[u8; 4] = b"EMJ1";
const DRAWING: &[u8; 4] = b"EMS1";
const RESUMED: &[u8; 4] = b"EMR2";
const REGION: &[u8; 4] = b"EMT1";
const ANSWER: &[u8; 4] = b"EMV1";

/// A job as received.
#[derive(Debug)]
pub struct ImageJob<'a> {
    pub policy: Policy,
    /// The image (owned when parts of it were left out and are restored as zeros).
    pub image: Cow<'a, [u8]>,
    /// Where another instance stopped decoding the image.
    pub resume: Option<&'a [u8]>,
    /// The image is an SVG whose drawing alone is judged.
    pub drawing: bool,
    /// Only this region of the image is to be decoded, its samples the answer.
    pub region: Option<Region>,
}

/// Everything of a job before the image bytes, which follow it (the glue streams them
/// into the request body without another copy).
pub fn job_header(policy: &Policy) -> Vec<u8> {
    framed(JOB, &policy_json(policy), &[])
}

/// A drawing job's header: the SVG bytes follow it.
pub fn drawing_header(policy: &Policy) -> Vec<u8> {
    framed(DRAWING, &policy_json(policy), &[])
}

/// A region job's header: the JPEG XL's bytes follow it.
pub fn region_header(policy: &Policy, region: Region) -> Vec<u8> {
    let mut header = framed(REGION, &policy_json(policy), &[]);
    header.extend_from_slice(&region.to_bytes());
    header
}

/// A resumed job: its header, and the parts of `image` that follow it in order (the
/// image without the spans the resumed decode will not read; all of it when the sibling
/// will decode it again in full, as it does a JPEG too small to reduce).
pub fn resumed_job<'i>(policy: &Policy, state: &[u8], image: &'i [u8]) -> (Vec<u8>, Vec<&'i [u8]>) {
    let left_out: Vec<Range<usize>> = decode::unread_span(image, state).into_iter().collect();
    let mut header = framed(
        RESUMED,
        &policy_json(policy),
        &(state.len() as u32).to_le_bytes(),
    );
    header.extend_from_slice(state);
    header.extend_from_slice(&(image.len() as u32).to_le_bytes());
    header.extend_from_slice(&(left_out.len() as u32).to_le_bytes());
    let mut parts = Vec::with_capacity(left_out.len() + 1);
    let mut at = 0;
    for span in &left_out {
        header.extend_from_slice(&(span.start as u32).to_le_bytes());
        header.extend_from_slice(&(span.len() as u32).to_le_bytes());
        parts.push(&image[at..span.start]);
        at = span.end;
    }
    parts.push(&image[at..]);
    (header, parts)
}

/// The image of a resumed job from what followed its state: its length, the spans left
/// out, and the rest of its bytes. Restored with zeros where it was left out, within
/// `max_bytes` (the job's policy's limit: the length is the sender's word).
fn restore_image(bytes: &[u8], max_bytes: usize) -> Result<Vec<u8>, HandoffError> {
    let malformed = || HandoffError::Malformed("left-out spans");
    let mut r = bytes;
    let mut u32_le = || -> Result<usize, HandoffError> {
        let (value, rest) = r.split_first_chunk::<4>().ok_or_else(malformed)?;
        r = rest;
        Ok(u32::from_le_bytes(*value) as usize)
    };
    let length = u32_le()?;
    let count = u32_le()?;
    if length > max_bytes || count > length {
        return Err(malformed());
    }
    let mut spans: Vec<Range<usize>> = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let start = u32_le()?;
        let end = start.checked_add(u32_le()?).ok_or_else(malformed)?;
        let after_previous = spans.last().is_none_or(|last| last.end <= start);
        if !after_previous || end > length {
            return Err(malformed());
        }
        spans.push(start..end);
    }
    let kept = r;
    let left_out: usize = spans.iter().map(Range::len).sum();
    if kept.len() + left_out != length {
        return Err(malformed());
    }
    let mut image = Vec::with_capacity(length);
    let mut from = 0;
    for span in spans {
        let before = span.start - image.len();
        image.extend_from_slice(&kept[from..from + before]);
        from += before;
        image.resize(span.end, 0);
    }
    image.extend_from_slice(&kept[from..]);
    Ok(image)
}

/// The policy as the job carries it.
fn policy_json(policy: &Policy) -> Vec<u8> {
    // Serialising plain data into JSON cannot fail.
    serde_json::to_vec(policy).unwrap_or_default()
}

pub fn encode_job(policy: &Policy, image: &[u8]) -> Vec<u8> {
    [job_header(policy).as_slice(), image].concat()
}

pub fn decode_job(bytes: &[u8]) -> Result<ImageJob<'_>, HandoffError> {
    let (json, mut rest, resume, drawing) = match (unframe(JOB, bytes), unframe(DRAWING, bytes)) {
        (Ok((json, image)), _) => (json, image, None, false),
        (_, Ok((json, svg))) => (json, svg, None, true),
        (Err(HandoffError::NotAHandoff), Err(HandoffError::NotAHandoff)) => {
            match unframe(REGION, bytes) {
                Ok((json, rest)) => (json, rest, None, false),
                Err(HandoffError::NotAHandoff) => {
                    let (json, rest) = unframe(RESUMED, bytes)?;
                    let (state, image) = unframe_length(rest)?;
                    (json, image, Some(state), false)
                }
                Err(e) => return Err(e),
            }
        }
        // The error of the magic that matched.
        (Err(HandoffError::NotAHandoff), Err(e)) | (Err(e), _) => return Err(e),
    };
    let region = match bytes.starts_with(REGION) {
        true => {
            let region = Region::from_bytes(rest).ok_or(HandoffError::Malformed("region"))?;
            rest = &rest[16..];
            Some(region)
        }
        false => None,
    };
    let json = std::str::from_utf8(json).map_err(|_| HandoffError::Malformed("policy"))?;
    let policy = Policy::from_json(json).map_err(|_| HandoffError::Malformed("policy"))?;
    let image = match resume {
        Some(_) => Cow::Owned(restore_image(rest, policy.limits.max_bytes)?),
        None => Cow::Borrowed(rest),
    };
    Ok(ImageJob {
        policy,
        image,
        resume,
        drawing,
        region,
    })
}

pub fn encode_answer(moderation: &Moderation) -> Vec<u8> {
    let record = record::encode(moderation);
    framed(ANSWER, &record.metadata, record.body)
}

pub fn decode_answer(bytes: &[u8]) -> Result<Moderation, HandoffError> {
    let (metadata, body) = unframe(ANSWER, bytes)?;
    record::decode(metadata, body.to_vec()).map_err(|_| HandoffError::Malformed("record"))
}

fn framed(magic: &[u8; 4], head: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + head.len() + body.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&(head.len() as u32).to_le_bytes());
    out.extend_from_slice(head);
    out.extend_from_slice(body);
    out
}

fn unframe<'a>(magic: &[u8; 4], bytes: &'a [u8]) -> Result<(&'a [u8], &'a [u8]), HandoffError> {
    unframe_length(bytes.strip_prefix(magic).ok_or(HandoffError::NotAHandoff)?)
}

/// A u32 LE length, that many bytes, and the rest.
fn unframe_length(bytes: &[u8]) -> Result<(&[u8], &[u8]), HandoffError> {
    let (length, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or(HandoffError::Malformed("truncated header"))?;
    let length = u32::from_le_bytes(*length) as usize;
    if rest.len() < length {
        return Err(HandoffError::Malformed("truncated"));
    }
    Ok(rest.split_at(length))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::Scores;
    use crate::media::jpeg;
    use crate::media::ImageFormat;
    use crate::moderation::{Outcome, Reason, Timings};

    #[test]
    fn jobs_and_answers_round_trip() {
        let policy = Policy::from_json(r#"{"block": {"status": 451}}"#).unwrap();
        let image = b"\x89PNG\r\n\x1a\n...".to_vec();
        let bytes = encode_job(&policy, &image);
        let job = decode_job(&bytes).unwrap();
        assert_eq!(job.policy, policy);
        assert!(matches!(job.image, Cow::Borrowed(bytes) if bytes == image));
        assert_eq!((job.resume, job.drawing), (None, false));
        let svg = b"<svg xmlns='http://www.w3.org/2000/svg'/>";
        let bytes = [drawing_header(&policy).as_slice(), svg].concat();
        let drawing = decode_job(&bytes).unwrap();
        assert_eq!((&drawing.image[..], drawing.drawing), (&svg[..], true));
        // A state that does not parse leaves nothing out.
        let (header, parts) = resumed_job(&policy, b"EMD2 state", &image);
        assert_eq!(parts, [&image[..]]);
        let resumed = [header.as_slice(), &image].concat();
        let job = decode_job(&resumed).unwrap();
        assert_eq!(
            (&job.image[..], job.resume),
            (&image[..], Some(&b"EMD2 state"[..]))
        );
        for cut in 0..resumed.len() - image.len() {
            assert!(decode_job(&resumed[..cut]).is_err(), "cut at {cut}");
        }
        let region = Region {
            left: 264,
            top: 8,
            width: 536,
            height: 592,
        };
        let header = region_header(&policy, region);
        let whole = [header.as_slice(), &image].concat();
        let job = decode_job(&whole).unwrap();
        assert_eq!((job.region, &job.image[..]), (Some(region), &image[..]));
        assert_eq!((job.resume, job.drawing), (None, false));
        for cut in 0..header.len() {
            assert!(decode_job(&header[..cut]).is_err(), "cut at {cut}");
        }

        let moderation = Moderation {
            outcome: Outcome::Rewrite {
                bytes: image.clone(),
                format: ImageFormat::Png,
            },
            reason: Reason::NoRuleMatched,
            scores: Some(Scores::new([0.5, 0.1, 0.2, 0.1, 0.1])),
            timings: Timings::default(),
            judged: None,
        };
        let back = decode_answer(&encode_answer(&moderation)).unwrap();
        assert_eq!(back.outcome, moderation.outcome);
        assert_eq!(back.scores, moderation.scores);
    }

    /// A `side`×`side` JPEG stopped part-way (its first rows decoded), and the state it
    /// left.
    fn stopped_jpeg(side: u16) -> (Vec<u8>, Vec<u8>) {
        let pixels: Vec<u8> = (0..u32::from(side) * u32::from(side) * 3)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut image = Vec::new();
        jpeg_encoder::Encoder::new(&mut image, 85)
            .encode(&pixels, side, side, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        let last = u32::from(side) - 1;
        let plan = |_, _| {
            Some(jpeg::Plan {
                rows: vec![0, last],
                columns: vec![0, last],
                preview_per_block: 1,
            })
        };
        let mut asked = 0;
        let mut stop = |_| {
            asked += 1;
            asked == 4
        };
        match jpeg::decode_resumable(&image, plan, None, &mut stop).unwrap() {
            jpeg::Progress::Suspended { state } => (image, state),
            jpeg::Progress::Done(_) => panic!("not stopped"),
        }
    }

    #[test]
    fn a_resumed_job_leaves_out_what_was_decoded_and_restores_it_as_zeros() {
        let policy = Policy::default();
        // Too small to reduce: the sibling decodes it again in full, so it all goes.
        let (small, state) = stopped_jpeg(256);
        assert!(jpeg::unread_span(&small, &state).is_some());
        assert_eq!(resumed_job(&policy, &state, &small).1, [&small[..]]);
        // Large enough to reduce: the decoded rows' data stays behind.
        let (image, state) = stopped_jpeg(800);
        let spans: Vec<_> = decode::unread_span(&image, &state).into_iter().collect();
        let left_out: usize = spans.iter().map(Range::len).sum();
        assert!(spans.len() == 1 && left_out > image.len() / 10, "{spans:?}");
        let (header, parts) = resumed_job(&policy, &state, &image);
        let sent = [header, parts.concat()].concat();
        assert_eq!(
            sent.len(),
            header_size(&state, spans.len()) + image.len() - left_out
        );
        let job = decode_job(&sent).unwrap();
        let mut expected = image.clone();
        expected[spans[0].clone()].fill(0);
        assert_eq!(
            (&job.image[..], job.resume),
            (&expected[..], Some(&state[..]))
        );
        // Cut anywhere in the header, or short of the image's last byte.
        let header = header_size(&state, spans.len());
        for cut in (0..header).chain([header + 1, sent.len() - 1]) {
            assert!(decode_job(&sent[..cut]).is_err(), "cut at {cut}");
        }
        // Spans out of order, past the image, or an image beyond the policy's limit.
        let tail = |length: u32, spans: &[(u32, u32)], kept: &[u8]| {
            let mut out = [length.to_le_bytes(), (spans.len() as u32).to_le_bytes()].concat();
            for (start, len) in spans {
                out.extend_from_slice(&[start.to_le_bytes(), len.to_le_bytes()].concat());
            }
            out.extend_from_slice(kept);
            out
        };
        assert_eq!(
            restore_image(&tail(6, &[(1, 2), (4, 1)], b"abc"), 10).unwrap(),
            b"a\0\0b\0c"
        );
        assert_eq!(restore_image(&tail(3, &[], b"abc"), 10).unwrap(), b"abc");
        for damaged in [
            tail(6, &[(4, 1), (1, 2)], b"abc"),
            tail(6, &[(1, 3), (3, 1)], b"ab"),
            tail(6, &[(5, 2)], b"abcd"),
            tail(6, &[(1, u32::MAX)], b"abcde"),
            tail(6, &[(1, 2)], b"abc"),
            tail(11, &[(1, 2)], b"abcdefghi"),
        ] {
            assert!(restore_image(&damaged, 10).is_err(), "{damaged:?}");
        }
    }

    /// The bytes of a resumed job before its image, for the default policy.
    fn header_size(state: &[u8], spans: usize) -> usize {
        let policy = serde_json::to_vec(&Policy::default()).unwrap().len();
        4 + 4 + policy + 4 + state.len() + 4 + 4 + 8 * spans
    }

    #[test]
    fn damaged_messages_are_refused() {
        let bytes = encode_job(&Policy::default(), b"image");
        for cut in 0..bytes.len() - b"image".len() {
            assert!(decode_job(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(
            decode_job(b"EMH1....").unwrap_err(),
            HandoffError::NotAHandoff
        );
        let mut invalid = framed(JOB, br#"{"block": {"status": 7}}"#, b"x");
        assert!(decode_job(&invalid).is_err());
        invalid = framed(ANSWER, b"{}", b"");
        assert!(decode_answer(&invalid).is_err());
    }
}
