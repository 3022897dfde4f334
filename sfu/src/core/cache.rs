//! The per-track retransmission cache: the last [`RetransmitCache::capacity`] packets a publisher
//! sent, indexed by sequence number, so a subscriber's NACK is answered by the SFU without asking
//! the publisher (whose link may be the narrow one).
//!
//! A ring indexed by `seq % capacity`: insertion overwrites the oldest slot, lookups check the
//! stored sequence number, so an evicted packet is a clean miss. Payloads are reference-counted
//! [`Bytes`]: caching costs no copy.

use super::RtpHeader;
use bytes::Bytes;

/// Cached packets of one track.
#[derive(Debug)]
pub struct RetransmitCache {
    slots: Vec<Option<(RtpHeader, Bytes)>>,
}

impl RetransmitCache {
    /// A cache of `capacity` packets (0 disables caching, as for audio).
    pub fn new(capacity: usize) -> Self {
        Self {
            slots: (0..capacity).map(|_| None).collect(),
        }
    }

    /// How many packets it holds at most.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Remembers a packet, evicting whatever had the same slot.
    pub fn insert(&mut self, header: RtpHeader, payload: &Bytes) {
        if self.slots.is_empty() {
            return;
        }
        let i = usize::from(header.sequence_number) % self.slots.len();
        self.slots[i] = Some((header, payload.clone()));
    }

    /// The packet with sequence number `seq`, if still cached.
    pub fn get(&self, seq: u16) -> Option<&(RtpHeader, Bytes)> {
        if self.slots.is_empty() {
            return None;
        }
        self.slots[usize::from(seq) % self.slots.len()]
            .as_ref()
            .filter(|(h, _)| h.sequence_number == seq)
    }
}
