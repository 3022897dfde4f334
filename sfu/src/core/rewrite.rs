//! Sequence-number and timestamp rewriting for one subscription.
//!
//! A subscriber sees one continuous RTP stream per subscription, whatever happens upstream: the
//! forwarded source may change (a spotlight, a simulcast layer, a publisher that reconnected with a
//! new SSRC). At each change the rewriter re-bases the offsets so the output sequence continues at
//! `last + 1` and the timestamp advances by the wall time that passed, never backwards.
//!
//! Invariants:
//! - output sequence numbers of forwarded packets are unique and, in arrival order of in-order
//!   input, consecutive across source changes;
//! - packets of a source from before the change point are dropped (they belong to an epoch the
//!   subscriber will never see);
//! - all arithmetic is wrapping (sequence numbers wrap at 2^16, timestamps at 2^32).

/// How far behind the newest packet a late packet may be and still be forwarded.
const MAX_REORDER: i16 = 512;

/// Rewriting state of one subscription.
#[derive(Debug, Default, Clone)]
pub struct SeqRewriter {
    started: bool,
    seq_offset: u16,
    ts_offset: u32,
    /// Highest input sequence number of the current source epoch.
    highest_in: u16,
    /// First input sequence number of the current epoch: anything older is dropped.
    epoch_first_in: u16,
    /// Last output sequence number and timestamp, for the next re-base.
    last_out_seq: u16,
    last_out_ts: u32,
}

impl SeqRewriter {
    /// Starts a new epoch at this packet: the next output continues from the last one, with the
    /// timestamp advanced by `ts_advance` (the elapsed time in RTP clock units, at least 1).
    pub fn rebase(&mut self, in_seq: u16, in_ts: u32, ts_advance: u32) {
        let (next_seq, next_ts) = if self.started {
            (
                self.last_out_seq.wrapping_add(1),
                self.last_out_ts.wrapping_add(ts_advance.max(1)),
            )
        } else {
            (in_seq, in_ts)
        };
        self.seq_offset = in_seq.wrapping_sub(next_seq);
        self.ts_offset = in_ts.wrapping_sub(next_ts);
        // One behind, so the epoch's first packet counts as new and moves `last_out_*`.
        self.highest_in = in_seq.wrapping_sub(1);
        self.epoch_first_in = in_seq;
        self.last_out_seq = next_seq.wrapping_sub(1);
        self.last_out_ts = next_ts;
        self.started = true;
    }

    /// Whether an epoch has begun.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Rewrites a packet of the current epoch, or `None` if it must be dropped.
    pub fn rewrite(&mut self, in_seq: u16, in_ts: u32) -> Option<(u16, u32)> {
        if !self.started {
            return None;
        }
        if (in_seq.wrapping_sub(self.epoch_first_in) as i16) < 0 {
            return None;
        }
        let ahead = in_seq.wrapping_sub(self.highest_in) as i16;
        if ahead > 0 {
            self.highest_in = in_seq;
        } else if ahead < -MAX_REORDER {
            return None;
        }
        let out = (
            in_seq.wrapping_sub(self.seq_offset),
            in_ts.wrapping_sub(self.ts_offset),
        );
        if ahead > 0 {
            self.last_out_seq = out.0;
            self.last_out_ts = out.1;
        }
        Some(out)
    }

    /// Maps an output sequence number (from a subscriber's NACK) back to the input sequence
    /// number of the current epoch, if it belongs to it.
    pub fn input_seq_of(&self, out_seq: u16) -> Option<u16> {
        if !self.started {
            return None;
        }
        let in_seq = out_seq.wrapping_add(self.seq_offset);
        let since_epoch = in_seq.wrapping_sub(self.epoch_first_in) as i16;
        let behind_head = self.highest_in.wrapping_sub(in_seq) as i16;
        (since_epoch >= 0 && behind_head >= 0).then_some(in_seq)
    }

    /// The output timestamp for an input timestamp of the current epoch.
    pub fn output_ts(&self, in_ts: u32) -> u32 {
        in_ts.wrapping_sub(self.ts_offset)
    }

    /// The last output sequence number.
    pub fn last_out_seq(&self) -> u16 {
        self.last_out_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuous_across_a_source_change_and_a_wrap() {
        let mut r = SeqRewriter::default();
        r.rebase(65_530, 1000, 0);
        let mut outs = vec![];
        for s in 65_530u16..=65_535 {
            outs.push(r.rewrite(s, 1000).unwrap().0);
        }
        for s in 0u16..3 {
            outs.push(r.rewrite(s, 4000).unwrap().0);
        }
        // New source, far-away numbers.
        r.rebase(20_000, 7_000_000, 3000);
        outs.push(r.rewrite(20_000, 7_000_000).unwrap().0);
        outs.push(r.rewrite(20_001, 7_000_000).unwrap().0);
        for w in outs.windows(2) {
            assert_eq!(w[1], w[0].wrapping_add(1), "{outs:?}");
        }
        // Timestamp moved forward by the advance.
        assert_eq!(r.output_ts(7_000_000), 4000 + 3000);
        // Old-epoch packets are dropped.
        assert_eq!(r.rewrite(19_999, 6_999_000), None);
    }

    #[test]
    fn late_packets_keep_their_place_and_nacks_map_back() {
        let mut r = SeqRewriter::default();
        r.rebase(100, 0, 0);
        r.rewrite(100, 0);
        r.rewrite(102, 0);
        assert_eq!(r.rewrite(101, 0).unwrap().0, 101);
        assert_eq!(r.input_seq_of(101), Some(101));
        assert_eq!(r.input_seq_of(99), None);
        assert_eq!(r.input_seq_of(103), None);
    }
}
