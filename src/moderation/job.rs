//! A whole image handed to a sibling instance (the images of one upload are judged in
//! parallel, one instance each): the policy it is judged by and its bytes. The sibling
//! answers with the [`Moderation`] in the verdict cache's record form.
//!
//! A JPEG whose decode one instance began and stopped (its CPU ran short) goes as a
//! resumed job: the decoder's state (`media::jpeg`'s `EMD1` or `EMP1`) travels with it, and the
//! sibling decodes on from there.
//!
//! An SVG's drawing goes as a drawing job: the sibling draws the SVG and judges the
//! drawing only (the coordinator judges the rasters it embeds meanwhile).
//!
//! ```text
//! job:     "EMJ1" | policy JSON length: u32 LE | policy JSON | image bytes
//! drawing: "EMS1" | policy JSON length: u32 LE | policy JSON | SVG bytes
//! resumed: "EMR1" | policy JSON length: u32 LE | policy JSON
//!                 | decode state length: u32 LE | decode state | image bytes
//! answer:  "EMV1" | record metadata length: u32 LE | metadata | rewritten image (or empty)
//! ```
//!
//! The policy travels with the job so the sibling judges by exactly the policy the
//! coordinator chose for the request (per route, once routes have policies); it is
//! validated again on arrival.

use super::handoff::HandoffError;
use super::record;
use super::Moderation;
use crate::policy::Policy;

const JOB: &[u8; 4] = b"EMJ1";
const DRAWING: &[u8; 4] = b"EMS1";
const RESUMED: &[u8; 4] = b"EMR1";
const ANSWER: &[u8; 4] = b"EMV1";

/// A job as received.
#[derive(Debug)]
pub struct ImageJob<'a> {
    pub policy: Policy,
    pub image: &'a [u8],
    /// Where another instance stopped decoding the image.
    pub resume: Option<&'a [u8]>,
    /// The image is an SVG whose drawing alone is judged.
    pub drawing: bool,
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

/// A resumed job's header: the image bytes follow it.
pub fn resumed_header(policy: &Policy, state: &[u8]) -> Vec<u8> {
    let mut out = framed(
        RESUMED,
        &policy_json(policy),
        &(state.len() as u32).to_le_bytes(),
    );
    out.extend_from_slice(state);
    out
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
    let (json, rest, resume, drawing) = match (unframe(JOB, bytes), unframe(DRAWING, bytes)) {
        (Ok((json, image)), _) => (json, image, None, false),
        (_, Ok((json, svg))) => (json, svg, None, true),
        (Err(HandoffError::NotAHandoff), Err(HandoffError::NotAHandoff)) => {
            let (json, rest) = unframe(RESUMED, bytes)?;
            let (state, image) = unframe_length(rest)?;
            (json, image, Some(state), false)
        }
        // The error of the magic that matched.
        (Err(HandoffError::NotAHandoff), Err(e)) | (Err(e), _) => return Err(e),
    };
    let json = std::str::from_utf8(json).map_err(|_| HandoffError::Malformed("policy"))?;
    let policy = Policy::from_json(json).map_err(|_| HandoffError::Malformed("policy"))?;
    Ok(ImageJob {
        policy,
        image: rest,
        resume,
        drawing,
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
    use crate::media::ImageFormat;
    use crate::moderation::{Outcome, Reason, Timings};

    #[test]
    fn jobs_and_answers_round_trip() {
        let policy = Policy::from_json(r#"{"block": {"status": 451}}"#).unwrap();
        let image = b"\x89PNG\r\n\x1a\n...".to_vec();
        let bytes = encode_job(&policy, &image);
        let job = decode_job(&bytes).unwrap();
        assert_eq!(job.policy, policy);
        assert_eq!(job.image, image);
        assert_eq!((job.resume, job.drawing), (None, false));
        let svg = b"<svg xmlns='http://www.w3.org/2000/svg'/>";
        let bytes = [drawing_header(&policy).as_slice(), svg].concat();
        let drawing = decode_job(&bytes).unwrap();
        assert_eq!((drawing.image, drawing.drawing), (&svg[..], true));
        let resumed = [resumed_header(&policy, b"EMD1 state").as_slice(), &image].concat();
        let job = decode_job(&resumed).unwrap();
        assert_eq!(
            (job.image, job.resume),
            (&image[..], Some(&b"EMD1 state"[..]))
        );
        for cut in 0..resumed.len() - image.len() {
            assert!(decode_job(&resumed[..cut]).is_err(), "cut at {cut}");
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
