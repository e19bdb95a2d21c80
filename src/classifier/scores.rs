//! What the model says about an image: a probability per [`Class`].

use serde::{Deserialize, Serialize};
use std::fmt;

/// The five classes, in the model's output order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Class {
    Drawing,
    Hentai,
    Neutral,
    Porn,
    Sexy,
}

impl Class {
    pub const ALL: [Class; 5] = [
        Class::Drawing,
        Class::Hentai,
        Class::Neutral,
        Class::Porn,
        Class::Sexy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Class::Drawing => "Drawing",
            Class::Hentai => "Hentai",
            Class::Neutral => "Neutral",
            Class::Porn => "Porn",
            Class::Sexy => "Sexy",
        }
    }
}

/// Class probabilities for one image; they sum to 1.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scores([f32; 5]);

impl Scores {
    pub fn new(probabilities: [f32; 5]) -> Self {
        Scores(probabilities)
    }

    pub fn get(&self, class: Class) -> f32 {
        self.0[class as usize]
    }

    /// The most probable class.
    pub fn top(&self) -> Class {
        let mut best = Class::Drawing;
        for class in Class::ALL {
            if self.get(class) > self.get(best) {
                best = class;
            }
        }
        best
    }
}

/// `Drawing=0.0123,Hentai=…` — the form used in the `x-moderation-scores` header.
impl fmt::Display for Scores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, class) in Class::ALL.iter().enumerate() {
            let separator = if i == 0 { "" } else { "," };
            write!(f, "{separator}{}={:.4}", class.name(), self.get(*class))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_report_top_class_and_header_form() {
        let scores = Scores::new([0.1, 0.0, 0.7, 0.15, 0.05]);
        assert_eq!(scores.top(), Class::Neutral);
        assert_eq!(
            scores.to_string(),
            "Drawing=0.1000,Hentai=0.0000,Neutral=0.7000,Porn=0.1500,Sexy=0.0500"
        );
    }
}
