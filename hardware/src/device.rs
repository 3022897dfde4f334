//! The device model of a recording classroom (录播教室).

use serde::{Deserialize, Serialize};

/// Where a camera points; the auto-director picks shots by position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraPosition {
    /// 教师特写: the teacher at the podium.
    TeacherCloseUp,
    /// 教师全景: the front of the room.
    TeacherWide,
    /// 学生全景: the pupils from the front.
    PupilsWide,
    /// 学生特写: the pupil who stands to answer (tracked).
    PupilCloseUp,
    /// 板书: the blackboard.
    Blackboard,
}

/// How a camera's pan, tilt and zoom are driven.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PtzProtocol {
    /// VISCA over IP (UDP 52381).
    ViscaIp,
    /// ONVIF PTZ (SOAP).
    Onvif,
}

/// What a device is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeviceKind {
    /// A camera at a position, optionally with PTZ.
    Camera {
        /// Where it points.
        position: CameraPosition,
        /// PTZ control, if any.
        ptz: Option<PtzProtocol>,
    },
    /// Capture of the teacher's PC screen (courseware, VGA/HDMI).
    ScreenCapture,
    /// A microphone.
    Microphone,
}

/// One device of a classroom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Stable id within the classroom.
    pub id: String,
    /// What it is.
    pub kind: DeviceKind,
    /// Where its media comes from, e.g. `rtsp://…` or `v4l2:///dev/video0`.
    pub source: String,
}

impl Device {
    /// Whether the device produces video.
    pub fn has_video(&self) -> bool {
        !matches!(self.kind, DeviceKind::Microphone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_round_trip_through_json() {
        let d = Device {
            id: "cam-1".into(),
            kind: DeviceKind::Camera {
                position: CameraPosition::TeacherCloseUp,
                ptz: Some(PtzProtocol::ViscaIp),
            },
            source: "rtsp://192.0.2.10/stream1".into(),
        };
        let json = serde_json::to_string(&d).unwrap();
        assert!(
            json.contains(r#""kind":"camera""#) && json.contains("teacher_close_up"),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Device>(&json).unwrap(), d);
        assert!(d.has_video());
        let mic = Device {
            id: "mic".into(),
            kind: DeviceKind::Microphone,
            source: "alsa://hw:1".into(),
        };
        assert!(!mic.has_video());
    }
}
