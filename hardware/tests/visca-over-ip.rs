//! VISCA over IP end to end: [`ViscaClient`] against [`ViscaSimulator`] on 127.0.0.1, real UDP.
//!
//! Tests that depend on timeouts run in paused tokio time: a timeout fires only when nothing
//! else can run, so they are instant and do not race the wall clock.

use std::time::Duration;

use duet_hardware::visca::codec::ErrorCode;
use duet_hardware::visca::{
    Command, Direction, PanSpeed, PtzPosition, TiltSpeed, ViscaClient, ViscaClientConfig,
    ViscaError, ViscaSimulator, ZoomSpeed,
};
use tokio::time::Instant;

async fn camera() -> (ViscaSimulator, ViscaClient) {
    let sim = ViscaSimulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut client = ViscaClient::connect(sim.local_addr()).await.unwrap();
    client.reset().await.unwrap();
    (sim, client)
}

fn drive(direction: Direction, pan: u8, tilt: u8) -> Command {
    Command::PanTilt {
        direction,
        pan_speed: PanSpeed::new(pan).unwrap(),
        tilt_speed: TiltSpeed::new(tilt).unwrap(),
    }
}

#[tokio::test]
async fn preset_set_then_recall_moves_the_camera() {
    let (sim, mut client) = camera().await;
    client
        .send(drive(Direction::UpRight, 0x10, 0x08))
        .await
        .unwrap();
    client
        .send(Command::ZoomTele(ZoomSpeed::new(1).unwrap()))
        .await
        .unwrap();
    client.send(Command::PanTiltStop).await.unwrap();
    client.send(Command::ZoomStop).await.unwrap();
    let teacher = PtzPosition {
        pan: 0x10,
        tilt: 0x08,
        zoom: 0x200,
    };
    assert_eq!(sim.position(), teacher);
    client.send(Command::preset_set(3).unwrap()).await.unwrap();
    assert_eq!(sim.preset(3), Some(teacher));

    client.send(Command::Home).await.unwrap();
    assert_eq!(
        sim.position(),
        PtzPosition {
            pan: 0,
            tilt: 0,
            zoom: 0x200
        }
    );
    client
        .send(Command::ZoomWide(ZoomSpeed::MAX))
        .await
        .unwrap();
    assert_eq!(sim.position(), PtzPosition::default());

    let completion = client
        .send(Command::preset_recall(3).unwrap())
        .await
        .unwrap();
    assert!(completion.data().is_empty());
    assert_eq!(sim.position(), teacher);
    assert_eq!(sim.commands_executed(), 8);

    client
        .send(Command::preset_reset(3).unwrap())
        .await
        .unwrap();
    assert_eq!(sim.preset(3), None);
}

#[tokio::test(start_paused = true)]
async fn a_lost_answer_is_retransmitted_with_the_same_sequence_number() {
    let (sim, mut client) = camera().await;
    client
        .send(drive(Direction::Left, 0x04, 0x01))
        .await
        .unwrap();
    let seq = client.next_seq();
    // Lose the ACK and the Completion of the first transmission.
    sim.drop_next_replies(2);
    let started = Instant::now();

    client.send(Command::Home).await.unwrap();

    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "resent after the ACK timeout"
    );
    let received = sim.received_sequence_numbers();
    let resent = &received[1..];
    assert!(resent.len() >= 2, "{received:?}");
    assert!(resent.iter().all(|&s| s == seq), "{received:?}");
    // Executed once: the drive and the home, not a second home.
    assert_eq!(sim.commands_executed(), 2);
    assert_eq!(sim.position(), PtzPosition::default());
}

#[tokio::test(start_paused = true)]
async fn a_completion_without_its_ack_is_enough() {
    let (sim, mut client) = camera().await;
    sim.drop_next_replies(1);
    let started = Instant::now();
    client.send(Command::Home).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "no retransmission needed"
    );
    assert_eq!(sim.received_sequence_numbers(), [0]);
    assert_eq!(sim.commands_executed(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_camera_that_never_answers_times_out_after_every_attempt() {
    let (sim, mut client) = camera().await;
    sim.drop_next_replies(u32::MAX);
    let started = Instant::now();

    let err = client.send(Command::Home).await.unwrap_err();

    assert!(
        matches!(
            err,
            ViscaError::Timeout {
                seq: 0,
                attempts: 4
            }
        ),
        "{err:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_millis(4 * 200));
    assert_eq!(sim.received_sequence_numbers(), [0, 0, 0, 0]);
    assert_eq!(
        sim.commands_executed(),
        1,
        "executed once, answered four times"
    );

    // The attempt count follows the configuration, and the next message moves on.
    let config = ViscaClientConfig {
        ack_timeout_ms: 50,
        retransmits: 1,
        ..ViscaClientConfig::default()
    };
    let mut impatient = ViscaClient::connect_with(sim.local_addr(), config)
        .await
        .unwrap();
    let err = impatient.send(Command::Home).await.unwrap_err();
    assert!(
        matches!(err, ViscaError::Timeout { attempts: 2, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_camera_that_is_not_there_times_out() {
    // Bind and drop a socket: nobody listens on that port, ICMP port-unreachable comes back.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = ViscaClientConfig {
        ack_timeout_ms: 20,
        retransmits: 2,
        ..ViscaClientConfig::default()
    };
    let mut client = ViscaClient::connect_with(port, config).await.unwrap();
    let err = client.send(Command::Home).await.unwrap_err();
    assert!(
        matches!(
            err,
            ViscaError::Timeout {
                seq: 0,
                attempts: 3
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn garbage_and_stale_replies_are_skipped() {
    let (sim, mut client) = camera().await;
    // Every garbage kind the simulator knows, plus a stale Error reply to another message.
    for _ in 0..6 {
        sim.inject_garbage_reply();
    }
    client.send(Command::preset_set(1).unwrap()).await.unwrap();
    client
        .send(Command::preset_recall(1).unwrap())
        .await
        .unwrap();
    assert_eq!(sim.commands_executed(), 2);
    assert_eq!(sim.received_sequence_numbers(), [0, 1], "no retransmission");
}

#[tokio::test]
async fn an_out_of_range_preset_is_refused_before_sending() {
    let (sim, mut client) = camera().await;
    let err = Command::preset_recall(0x80).unwrap_err();
    assert!(
        matches!(err, ViscaError::PresetOutOfRange { preset: 0x80 }),
        "{err:?}"
    );
    assert!(Command::preset_set(0xFF).is_err());
    // A raw payload of the wrong size is refused too; nothing reached the camera.
    let err = client.send_raw(&[]).await.unwrap_err();
    assert!(
        matches!(err, ViscaError::PayloadLength { len: 0 }),
        "{err:?}"
    );
    let err = client.send_raw(&[0x81; 17]).await.unwrap_err();
    assert!(
        matches!(err, ViscaError::PayloadLength { len: 17 }),
        "{err:?}"
    );
    assert!(sim.received_sequence_numbers().is_empty());
    assert_eq!(
        client.next_seq(),
        0,
        "refused messages use no sequence number"
    );
}

#[tokio::test]
async fn camera_errors_come_back_typed() {
    let (sim, mut client) = camera().await;
    // An unknown preset operation (09): syntax.
    let err = client
        .send_raw(&[0x81, 0x01, 0x04, 0x3F, 0x09, 0x01, 0xFF])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ViscaError::Camera {
                seq: 0,
                code: ErrorCode::SYNTAX
            }
        ),
        "{err:?}"
    );
    // No terminator: syntax.
    let err = client
        .send_raw(&[0x81, 0x01, 0x06, 0x04])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ViscaError::Camera {
                seq: 1,
                code: ErrorCode::SYNTAX
            }
        ),
        "{err:?}"
    );
    // A preset that was never set: not executable.
    let err = client
        .send(Command::preset_recall(9).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ViscaError::Camera {
                seq: 2,
                code: ErrorCode::NOT_EXECUTABLE
            }
        ),
        "{err:?}"
    );
    assert_eq!(sim.commands_executed(), 0);
    // A raw payload the camera understands works like the typed command.
    client
        .send_raw(&[0x81, 0x01, 0x06, 0x04, 0xFF])
        .await
        .unwrap();
    assert_eq!(sim.commands_executed(), 1);
}

#[tokio::test]
async fn reset_makes_a_restarted_controller_safe() {
    let sim = ViscaSimulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut first = ViscaClient::connect(sim.local_addr()).await.unwrap();
    first.send(Command::Home).await.unwrap();
    assert_eq!(sim.commands_executed(), 1);
    drop(first);

    // A new controller without RESET starts at 0 again: the camera takes its first command for
    // a retransmission of the last one and does not execute it.
    let mut second = ViscaClient::connect(sim.local_addr()).await.unwrap();
    second.send(Command::preset_set(0).unwrap()).await.unwrap();
    assert_eq!(sim.commands_executed(), 1);
    assert_eq!(sim.preset(0), None);

    // With RESET, the camera forgets and the client starts over at 0.
    second.reset().await.unwrap();
    assert_eq!(second.next_seq(), 0);
    second.send(Command::preset_set(0).unwrap()).await.unwrap();
    assert_eq!(sim.commands_executed(), 2);
    assert_eq!(sim.preset(0), Some(PtzPosition::default()));
    assert_eq!(sim.received_sequence_numbers(), [0, 0, 0]);
}

#[tokio::test]
async fn invalid_configuration_is_refused() {
    let config = ViscaClientConfig {
        ack_timeout_ms: 0,
        ..ViscaClientConfig::default()
    };
    let err = ViscaClient::connect_with("127.0.0.1:52381".parse().unwrap(), config)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ViscaError::InvalidConfig {
                field: "ack_timeout_ms",
                ..
            }
        ),
        "{err:?}"
    );
}
