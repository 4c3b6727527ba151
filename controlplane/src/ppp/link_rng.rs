//! A link's random stream, kept small between uses.
//!
//! Every random value of a PPP link comes from one ChaCha8 stream (so a
//! seed replays a link and a snapshot carries on its stream). The
//! generator itself is 320 bytes, most of it a buffer of output words; a
//! million links that draw a few values while they negotiate and then
//! almost never would hold 320 MB of buffers. So a link keeps the stream's
//! key and position alone (the 56 bytes the generator's own serialized
//! form has) and builds the generator for the values it draws while it
//! handles an input, dropping it again when done ([`LinkRng::settle`]).
//! The values are the same either way: the position counts the words
//! drawn, whether or not the buffer was dropped in between.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug)]
pub struct LinkRng {
    seed: [u8; 32],
    stream: u64,
    /// The next word to draw, while `live` is None.
    word_pos: u128,
    live: Option<Box<ChaCha8Rng>>,
}

impl LinkRng {
    pub fn new(rng: ChaCha8Rng) -> Self {
        LinkRng { seed: rng.get_seed(), stream: rng.get_stream(), word_pos: rng.get_word_pos(), live: None }
    }

    /// The generator, built at the stream's position if it was settled.
    pub fn live(&mut self) -> &mut ChaCha8Rng {
        let (seed, stream, word_pos) = (self.seed, self.stream, self.word_pos);
        self.live.get_or_insert_with(|| {
            let mut r = ChaCha8Rng::from_seed(seed);
            r.set_stream(stream);
            r.set_word_pos(word_pos);
            Box::new(r)
        })
    }

    /// Keeps the position alone until the next draw.
    pub fn settle(&mut self) {
        if let Some(r) = self.live.take() {
            self.word_pos = r.get_word_pos();
        }
    }

    fn generator(&self) -> ChaCha8Rng {
        match &self.live {
            Some(r) => (**r).clone(),
            None => {
                let mut r = ChaCha8Rng::from_seed(self.seed);
                r.set_stream(self.stream);
                r.set_word_pos(self.word_pos);
                r
            }
        }
    }
}

/// The same stream at the same position.
impl PartialEq for LinkRng {
    fn eq(&self, other: &Self) -> bool {
        self.generator() == other.generator()
    }
}

/// As the generator itself serializes: a stored link reads back either way.
impl Serialize for LinkRng {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.generator().serialize(s)
    }
}

impl<'de> Deserialize<'de> for LinkRng {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ChaCha8Rng::deserialize(d).map(LinkRng::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn settling_does_not_change_the_stream() {
        let mut plain = ChaCha8Rng::seed_from_u64(7);
        let mut link = LinkRng::new(ChaCha8Rng::seed_from_u64(7));
        for n in 1..40 {
            for _ in 0..n {
                assert_eq!(link.live().gen::<u32>(), plain.gen::<u32>());
            }
            let wide: u64 = link.live().gen();
            assert_eq!(wide, plain.gen::<u64>());
            if n % 3 != 0 {
                link.settle();
                assert!(link.live.is_none());
            }
        }
    }

    #[test]
    fn serializes_as_the_generator() {
        let mut link = LinkRng::new(ChaCha8Rng::seed_from_u64(9));
        let _: [u8; 13] = link.live().gen();
        link.settle();
        let mut plain = ChaCha8Rng::seed_from_u64(9);
        let _: [u8; 13] = plain.gen();
        assert_eq!(serde_json::to_string(&link).unwrap(), serde_json::to_string(&plain).unwrap());
        let mut back: LinkRng = serde_json::from_str(&serde_json::to_string(&plain).unwrap()).unwrap();
        assert_eq!(back.live().gen::<u64>(), plain.gen::<u64>());
    }
}
