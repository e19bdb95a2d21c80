//! The message an instance hands an unfinished inference to a sibling instance with: which
//! segment of the network runs next, and the tensor at the cut (f32, little-endian). The
//! sibling answers in the same form, with the segment index the number of segments when
//! the inference is complete.
//!
//! ```text
//! "EMH1" | next segment: u8 | rank: u8 | rank × dimension: u32 LE | f32 LE × elements
//! ```
//!
//! Only the service's own instances send these (the route is behind a shared secret), but
//! a message is still checked whole before it is used: a damaged one is an error, never a
//! panic or an allocation beyond [`MAX_ELEMENTS`].

use tract_onnx::prelude::Tensor;

const MAGIC: &[u8; 4] = b"EMH1";
const MAX_RANK: usize = 6;
/// The largest tensor a message may carry (16 MB of f32): MobileNetV2's largest activation
/// at a cut is ~100 k values.
pub const MAX_ELEMENTS: usize = 4 << 20;

/// An inference part-way: `tensor` is what segment `next` reads.
#[derive(Debug)]
pub struct Handoff {
    pub next: usize,
    pub tensor: Tensor,
}

#[derive(Debug, PartialEq)]
pub enum HandoffError {
    NotAHandoff,
    Malformed(&'static str),
}

impl std::fmt::Display for HandoffError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandoffError::NotAHandoff => write!(f, "not a hand-off message"),
            HandoffError::Malformed(why) => write!(f, "malformed hand-off message: {why}"),
        }
    }
}

impl std::error::Error for HandoffError {}

impl Handoff {
    pub fn encode(&self) -> Result<Vec<u8>, HandoffError> {
        let next = u8::try_from(self.next).map_err(|_| HandoffError::Malformed("segment"))?;
        let shape = self.tensor.shape();
        if shape.len() > MAX_RANK {
            return Err(HandoffError::Malformed("rank"));
        }
        let data = self
            .tensor
            .to_plain_array_view::<f32>()
            .map_err(|_| HandoffError::Malformed("not an f32 tensor"))?;
        let mut out = Vec::with_capacity(6 + 4 * shape.len() + 4 * data.len());
        out.extend_from_slice(MAGIC);
        out.push(next);
        out.push(shape.len() as u8);
        for &dimension in shape {
            let dimension =
                u32::try_from(dimension).map_err(|_| HandoffError::Malformed("dimension"))?;
            out.extend_from_slice(&dimension.to_le_bytes());
        }
        // In logical (row-major) order, whatever the view's memory layout.
        for value in data.iter() {
            out.extend_from_slice(&value.to_le_bytes());
        }
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Handoff, HandoffError> {
        let rest = bytes.strip_prefix(MAGIC).ok_or(HandoffError::NotAHandoff)?;
        let [next, rank, rest @ ..] = rest else {
            return Err(HandoffError::Malformed("truncated header"));
        };
        let rank = usize::from(*rank);
        if rank > MAX_RANK || rest.len() < 4 * rank {
            return Err(HandoffError::Malformed("shape"));
        }
        let (dimensions, data) = rest.split_at(4 * rank);
        let shape: Vec<usize> = dimensions
            .chunks_exact(4)
            .map(|d| u32::from_le_bytes([d[0], d[1], d[2], d[3]]) as usize)
            .collect();
        let elements = shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or(HandoffError::Malformed("too many elements"))?;
        if data.len() != 4 * elements {
            return Err(HandoffError::Malformed(
                "data length does not match the shape",
            ));
        }
        let values: Vec<f32> = data
            .chunks_exact(4)
            .map(|v| f32::from_le_bytes([v[0], v[1], v[2], v[3]]))
            .collect();
        let tensor =
            Tensor::from_shape(&shape, &values).map_err(|_| HandoffError::Malformed("shape"))?;
        Ok(Handoff {
            next: usize::from(*next),
            tensor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Handoff {
        let values: Vec<f32> = (0..2 * 3 * 4).map(|i| i as f32 * 0.5 - 3.0).collect();
        Handoff {
            next: 2,
            tensor: Tensor::from_shape(&[1, 2, 3, 4], &values).unwrap(),
        }
    }

    #[test]
    fn a_message_round_trips_exactly() {
        let original = sample();
        let back = Handoff::decode(&original.encode().unwrap()).unwrap();
        assert_eq!(back.next, 2);
        assert_eq!(back.tensor, original.tensor);
    }

    #[test]
    fn damaged_messages_are_refused_without_panicking() {
        let bytes = sample().encode().unwrap();
        assert_eq!(
            Handoff::decode(b"GET / HTTP/1.1").unwrap_err(),
            HandoffError::NotAHandoff
        );
        for cut in 0..bytes.len() {
            assert!(Handoff::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Handoff::decode(&longer).is_err());
        // A shape claiming ~2^64 elements, with no data behind it.
        let mut huge = b"EMH1\x00\x04".to_vec();
        for _ in 0..4 {
            huge.extend_from_slice(&u32::MAX.to_le_bytes());
        }
        assert_eq!(
            Handoff::decode(&huge).unwrap_err(),
            HandoffError::Malformed("too many elements")
        );
        let mut deep = b"EMH1\x00\x07".to_vec();
        deep.extend_from_slice(&[1; 28]);
        assert!(Handoff::decode(&deep).is_err());
    }
}
