//! The SFU service: rooms by id, token verification, peer-connection construction, and the
//! shared counters. [`Sfu`] is cheap to share (`Arc`) and is the state of the HTTP router.

use crate::config::SfuConfig;
use crate::core::CoreConfig;
use crate::shell::media::{self, PortAllocator};
use crate::shell::room::{LiveRoom, ShellCounters};
use duet_sfu_proto::{RoomId, TokenKey};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateType, SettingEngineBuilder,
};

/// Why the SFU could not do something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SfuError {
    /// Invalid configuration.
    #[error("invalid SFU configuration: {0}")]
    Config(String),
    /// webrtc-rs refused.
    #[error("webrtc: {0}")]
    Rtc(#[from] webrtc::error::Error),
    /// No media port in the configured range could be bound.
    #[error("no free media port in {min}..={max}")]
    NoPort {
        /// Range start.
        min: u16,
        /// Range end.
        max: u16,
    },
}

/// What happened in a room, for attendance and session reports (the gateway listens).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SfuEvent {
    /// A participant joined (or rejoined) a room.
    Joined {
        /// Room.
        room: RoomId,
        /// Who.
        participant: duet_sfu_proto::ParticipantId,
        /// As what.
        role: duet_sfu_proto::Role,
        /// When.
        at: std::time::SystemTime,
    },
    /// A participant left a room.
    Left {
        /// Room.
        room: RoomId,
        /// Who.
        participant: duet_sfu_proto::ParticipantId,
        /// When.
        at: std::time::SystemTime,
    },
    /// The first participant arrived: the live class started.
    RoomOpened {
        /// Room.
        room: RoomId,
        /// When.
        at: std::time::SystemTime,
    },
    /// The last participant left: the live class ended.
    RoomClosed {
        /// Room.
        room: RoomId,
        /// When.
        at: std::time::SystemTime,
    },
}

/// The SFU.
pub struct Sfu {
    /// Configuration.
    pub config: SfuConfig,
    key: TokenKey,
    rooms: Mutex<HashMap<RoomId, Arc<LiveRoom>>>,
    ports: PortAllocator,
    /// Counters that outlive rooms.
    pub counters: Arc<ShellCounters>,
    next_epoch: AtomicU64,
    /// Sessions currently open.
    pub sessions: AtomicU64,
    events: tokio::sync::broadcast::Sender<SfuEvent>,
}

impl Sfu {
    /// An SFU verifying tokens with `key`.
    pub fn new(config: SfuConfig, key: TokenKey) -> Result<Arc<Self>, SfuError> {
        config.validate().map_err(SfuError::Config)?;
        Ok(Arc::new(Self {
            ports: PortAllocator::new(&config),
            config,
            key,
            rooms: Mutex::new(HashMap::new()),
            counters: Arc::new(ShellCounters::default()),
            next_epoch: AtomicU64::new(1),
            sessions: AtomicU64::new(0),
            events: tokio::sync::broadcast::channel(1024).0,
        }))
    }

    /// The token key.
    pub fn key(&self) -> &TokenKey {
        &self.key
    }

    /// Room and participant events (joins, leaves, class start and end). A slow listener that
    /// falls 1024 events behind loses the oldest.
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<SfuEvent> {
        self.events.subscribe()
    }

    /// Publishes an event to listeners, if any.
    pub fn emit(&self, event: SfuEvent) {
        let _ = self.events.send(event);
    }

    /// A fresh session epoch.
    pub fn epoch(&self) -> u64 {
        self.next_epoch.fetch_add(1, Ordering::Relaxed)
    }

    /// Enters room `id` (created if needed): `enter` runs on the room's state while the room
    /// registry is locked, so [`Sfu::close_if_empty`] cannot close the room between finding it
    /// and adding the member (which would split a class into two rooms of the same id).
    pub fn enter_room<R>(
        self: &Arc<Self>,
        id: &RoomId,
        enter: impl FnOnce(&LiveRoom, &mut crate::shell::room::RoomInner) -> R,
    ) -> (Arc<LiveRoom>, R) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.room_locked(&mut rooms, id);
        let r = {
            let mut inner = room.lock();
            enter(&room, &mut inner)
        };
        (room, r)
    }

    fn room_locked(
        self: &Arc<Self>,
        rooms: &mut HashMap<RoomId, Arc<LiveRoom>>,
        id: &RoomId,
    ) -> Arc<LiveRoom> {
        if let Some(r) = rooms.get(id) {
            return r.clone();
        }
        let core = CoreConfig {
            pli_interval: Duration::from_millis(self.config.pli_interval_ms),
            video_cache_packets: self.config.retransmit_cache_packets,
            ..CoreConfig::default()
        };
        let room = Arc::new(LiveRoom::new(id.clone(), core, self.counters.clone()));
        tracing::info!(parent: &room.span, "room opened");
        self.emit(SfuEvent::RoomOpened {
            room: id.clone(),
            at: std::time::SystemTime::now(),
        });
        rooms.insert(id.clone(), room.clone());
        tokio::spawn(tick(Arc::downgrade(&room)));
        room
    }

    /// Closes the room if nobody is left in it.
    pub fn close_if_empty(&self, room: &Arc<LiveRoom>) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if room.lock().members.is_empty()
            && rooms.get(&room.id).is_some_and(|r| Arc::ptr_eq(r, room))
        {
            rooms.remove(&room.id);
            room.retire();
            tracing::info!(parent: &room.span, "room closed");
            self.emit(SfuEvent::RoomClosed {
                room: room.id.clone(),
                at: std::time::SystemTime::now(),
            });
        }
    }

    /// Live rooms.
    pub fn rooms(&self) -> Vec<Arc<LiveRoom>> {
        self.rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Drains: asks every session to close (code `SHUTDOWN`, so clients reconnect elsewhere or
    /// later) and waits until they have left, at most `deadline`.
    pub async fn shutdown(&self, deadline: Duration) {
        for room in self.rooms() {
            let inner = room.lock();
            for m in inner.members.values() {
                let _ = m.cmd.send(crate::shell::room::SessionCmd::Close(
                    duet_sfu_proto::signal::close::SHUTDOWN,
                    "the server is restarting; reconnecting".into(),
                ));
            }
        }
        let until = tokio::time::Instant::now() + deadline;
        while self.sessions.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A new peer connection on the next free media port. `estimate` makes it a subscribe
    /// connection whose bandwidth estimate is written there (see [`media::interceptors`]).
    pub async fn peer_connection(
        &self,
        handler: Arc<dyn PeerConnectionEventHandler>,
        estimate: Option<media::Estimate>,
    ) -> Result<Arc<dyn PeerConnection>, SfuError> {
        let attempts = self.ports.span().min(64);
        let mut last_err = None;
        for _ in 0..attempts {
            let port = self.ports.next_port();
            let mut settings = SettingEngineBuilder::new()
                .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled);
            if !self.config.public_ips.is_empty() {
                settings = settings.with_nat_1to1_ips(
                    self.config
                        .public_ips
                        .iter()
                        .map(|ip| ip.to_string())
                        .collect(),
                    RTCIceCandidateType::Host,
                );
            }
            let mut builder = PeerConnectionBuilder::new()
                .with_configuration(RTCConfigurationBuilder::new().build())
                .with_media_engine(media::media_engine()?)
                .with_interceptor_registry(media::interceptors(estimate.clone()))
                .with_setting_engine(settings.build())
                .with_handler(handler.clone())
                .with_udp_addrs(vec![format!("0.0.0.0:{port}")]);
            if self.config.ice_tcp {
                builder = builder.with_tcp_addrs(vec![format!("0.0.0.0:{port}")]);
            }
            match builder.build().await {
                Ok(pc) => return Ok(Arc::new(pc)),
                Err(e) => last_err = Some(e),
            }
        }
        tracing::warn!(error = ?last_err, "no media port could be bound");
        Err(SfuError::NoPort {
            min: self.config.rtc_port_min,
            max: self.config.rtc_port_max,
        })
    }
}

/// Drives a room's timers until the room is gone.
async fn tick(room: std::sync::Weak<LiveRoom>) {
    let mut interval = tokio::time::interval(Duration::from_millis(50));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(room) = room.upgrade() else { return };
        let mut deferred = Vec::new();
        {
            let mut inner = room.lock();
            LiveRoom::update_estimates(&mut inner);
            inner.core.handle_timeout(std::time::Instant::now());
            room.drain(&mut inner, &mut deferred);
        }
        if !deferred.is_empty() {
            room.perform(deferred).await;
        }
    }
}
