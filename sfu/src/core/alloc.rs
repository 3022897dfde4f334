//! Per-subscriber bandwidth allocation: which simulcast layer of each video track a receiving
//! classroom gets, given the bandwidth estimated toward it.
//!
//! Priorities under pressure, highest first: audio (always forwarded, its rate reserved before
//! anything else), a screen share (the courseware), the lead teacher's camera, then the
//! classroom cameras. Two passes over the video subscriptions in that order:
//! 1. each gets its lowest layer if that still fits, else it is **paused** (no video rather than
//!    a frozen, lossy one);
//! 2. in the same order, each climbs as high as the remaining budget and its display size allow.
//!
//! So a poor link loses the classrooms' cameras before the teacher's, and every video before a
//! word of audio. Pure functions of their inputs: no clock, no I/O.

/// What the allocator knows of one video subscription.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Want {
    /// Lower is more important: see [`priority`].
    pub priority: u8,
    /// Bits per second of each layer, lowest first (unused entries past `layers` are ignored).
    pub rates: [u64; MAX_LAYERS],
    /// How many layers the track has (1 without simulcast).
    pub layers: u8,
    /// The highest layer worth sending for how large it is shown; `None` when it is not shown.
    pub max_layer: Option<u8>,
}

/// The most simulcast layers a track has.
pub const MAX_LAYERS: usize = 3;

/// Allocation priority of a video source (lower first).
pub fn priority(source: duet_sfu_proto::Source, lead: bool) -> u8 {
    match (source, lead) {
        (duet_sfu_proto::Source::Screen, _) => 0,
        (duet_sfu_proto::Source::Camera, true) => 1,
        _ => 2,
    }
}

/// Chooses a layer (or a pause, `None`) for each subscription within `budget` bits per second.
/// `wants` (keyed by anything the caller likes) must be sorted by priority; `out` receives one
/// choice per want, in the same order.
pub fn allocate<K>(budget: u64, wants: &[(K, Want)], out: &mut Vec<Option<u8>>) {
    out.clear();
    let mut left = budget;
    for (_, w) in wants {
        let shown = w.max_layer.is_some() && w.layers > 0;
        if shown && w.rates[0] <= left {
            left -= w.rates[0];
            out.push(Some(0));
        } else {
            out.push(None);
        }
    }
    for ((_, w), choice) in wants.iter().zip(out.iter_mut()) {
        let Some(mut layer) = *choice else { continue };
        let top = w
            .max_layer
            .unwrap_or(0)
            .min(w.layers.saturating_sub(1))
            .min(MAX_LAYERS as u8 - 1);
        while layer < top {
            let (now, next) = (w.rates[usize::from(layer)], w.rates[usize::from(layer) + 1]);
            let extra = next.saturating_sub(now);
            if extra > left {
                break;
            }
            left -= extra;
            layer += 1;
        }
        *choice = Some(layer);
    }
}

/// The highest layer worth sending to a tile `height` device pixels tall, for a camera whose
/// layers are a quarter, half and full of 720 lines (`None`: not shown at all).
pub fn layer_for_height(height: u32) -> Option<u8> {
    match height {
        0 => None,
        1..=200 => Some(0),
        201..=400 => Some(1),
        _ => Some(2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIMULCAST: [u64; 3] = [150_000, 500_000, 1_500_000];

    fn cam(priority: u8) -> Want {
        Want {
            priority,
            rates: SIMULCAST,
            layers: 3,
            max_layer: Some(2),
        }
    }

    fn run(budget: u64, wants: &[Want]) -> Vec<Option<u8>> {
        let keyed: Vec<((), Want)> = wants.iter().map(|w| ((), *w)).collect();
        let mut out = Vec::new();
        allocate(budget, &keyed, &mut out);
        out
    }

    #[test]
    fn plenty_of_bandwidth_gives_every_track_its_top_layer() {
        assert_eq!(run(10_000_000, &[cam(1), cam(2)]), vec![Some(2), Some(2)]);
    }

    #[test]
    fn the_teachers_camera_climbs_before_a_classrooms() {
        // Both get the lowest layer first; then the teacher's climbs as far as it fits, and the
        // classroom's takes what is left.
        assert_eq!(run(1_700_000, &[cam(1), cam(2)]), vec![Some(2), Some(0)]);
        assert_eq!(run(1_500_000, &[cam(1), cam(2)]), vec![Some(1), Some(1)]);
        assert_eq!(run(700_000, &[cam(1), cam(2)]), vec![Some(1), Some(0)]);
    }

    #[test]
    fn a_starved_link_pauses_the_lower_priorities_first() {
        let screen = Want {
            priority: 0,
            rates: [200_000, 0, 0],
            layers: 1,
            max_layer: Some(2),
        };
        assert_eq!(
            run(400_000, &[screen, cam(1), cam(2)]),
            vec![Some(0), Some(0), None]
        );
        assert_eq!(run(100_000, &[screen, cam(1), cam(2)]), vec![None; 3]);
    }

    #[test]
    fn a_small_tile_caps_the_layer_and_a_hidden_one_gets_nothing() {
        let thumb = Want {
            max_layer: layer_for_height(120),
            ..cam(2)
        };
        let hidden = Want {
            max_layer: layer_for_height(0),
            ..cam(2)
        };
        assert_eq!(
            run(10_000_000, &[cam(1), thumb, hidden]),
            vec![Some(2), Some(0), None]
        );
        assert_eq!(layer_for_height(360), Some(1));
        assert_eq!(layer_for_height(1080), Some(2));
    }
}
