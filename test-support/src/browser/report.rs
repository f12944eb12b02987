//! The browser driver's `REPORT` (registrations, call states, ICE/DTLS states, getStats RTP
//! packet counts, selected candidate pair, BYE result) and the media verdict of issue 6.

use std::time::Duration;

use serde::Deserialize;

/// The driver's `REPORT`: one entry per page.
#[derive(Debug, Clone, Deserialize)]
pub struct BrowserReport {
    /// The scenario's name.
    pub scenario: String,
    /// `Chrome/156.0.8078.108`, as the browser tells.
    pub browser: String,
    /// The driver's run time, including the bundle build.
    pub elapsed_ms: u64,
    /// One per page (user agent), in the scenario's order.
    pub agents: Vec<AgentReport>,
}

impl BrowserReport {
    /// The page of `user`.
    pub fn agent(&self, user: &str) -> Option<&AgentReport> {
        self.agents.iter().find(|a| a.user.as_deref() == Some(user))
    }
}

/// One JsSIP user agent.
#[derive(Debug, Clone, Deserialize)]
pub struct AgentReport {
    /// Its user part.
    pub user: Option<String>,
    /// Whether REGISTER succeeded.
    pub registered: bool,
    /// The registration failure, if any.
    pub registration_error: Option<String>,
    /// Errors of the page (such as an SDP without a usable candidate).
    pub errors: Vec<String>,
    /// First lines of every SIP message on its WebSocket: `MS in|out START-LINE`.
    pub wire: Vec<String>,
    /// Its calls, in the order they appeared.
    pub calls: Vec<CallReport>,
}

/// One call of a page.
#[derive(Debug, Clone, Deserialize)]
pub struct CallReport {
    /// `outgoing` or `incoming`.
    pub direction: String,
    /// Its Call-ID.
    pub call_id: Option<String>,
    /// JsSIP session events (`progress`, `accepted`, `confirmed`, `ended:ORIGIN:CAUSE`, ...).
    pub states: Vec<Mark>,
    /// `iceconnectionstatechange` history.
    pub ice_states: Vec<Mark>,
    /// getStats samples, every 250 ms from confirmation until media flowed or the wait ended.
    pub samples: Vec<StatsSample>,
    /// The final response to the call's BYE, whoever sent it.
    pub bye: Option<ByeResult>,
    /// A page error for this call.
    pub error: Option<String>,
    /// The failure status code, when the call failed with a response.
    pub failed_status: Option<u16>,
    /// The SDP the page sent (after the loopback rewrite).
    pub local_sdp: Option<String>,
    /// The SDP the page received.
    pub remote_sdp: Option<String>,
}

/// A named event at a page time.
#[derive(Debug, Clone, Deserialize)]
pub struct Mark {
    /// Milliseconds since the page loaded.
    pub ms: u64,
    /// The event.
    pub state: String,
}

/// One getStats sample.
#[derive(Debug, Clone, Deserialize)]
pub struct StatsSample {
    /// Milliseconds since the page loaded.
    pub ms: u64,
    /// `RTCPeerConnection.iceConnectionState`.
    pub ice: Option<String>,
    /// `RTCPeerConnection.connectionState`.
    pub connection: Option<String>,
    /// The transport's `dtlsState`.
    pub dtls: Option<String>,
    /// Audio RTP packets received.
    pub inbound: u64,
    /// Audio RTP packets sent.
    pub outbound: u64,
    /// The inbound codec (`audio/opus`, `audio/PCMU`).
    pub codec: Option<String>,
    /// Selected pair, local end: `ADDRESS:PORT udp host|prflx|...`.
    pub local: Option<String>,
    /// Selected pair, remote end.
    pub remote: Option<String>,
}

/// The final response to a BYE.
#[derive(Debug, Clone, Deserialize)]
pub struct ByeResult {
    /// `in`: the page sent the BYE and received this response; `out`: the page answered a BYE.
    pub direction: String,
    /// The status code.
    pub status: u16,
}

/// How many RTP packets each way make "media flows" (issue 6).
pub const MIN_PACKETS: u64 = 50;

/// How long after the call is confirmed the packets may take (issue 6).
pub const MEDIA_WITHIN: Duration = Duration::from_secs(15);

impl CallReport {
    /// When the call was confirmed (page time), if it was.
    pub fn confirmed_at(&self) -> Option<u64> {
        self.states
            .iter()
            .find(|m| m.state == "confirmed")
            .map(|m| m.ms)
    }

    /// The first sample with ICE connected, DTLS connected and more than [`MIN_PACKETS`] RTP
    /// packets each way, within [`MEDIA_WITHIN`] of confirmation, whose selected pair has a
    /// 127.0.0.1 `host` candidate at the remote end and a loopback address locally; else why not.
    pub fn check_media(&self) -> Result<&StatsSample, String> {
        let confirmed = self
            .confirmed_at()
            .ok_or_else(|| format!("never confirmed: {:?}", self.states))?;
        let limit = confirmed + u64::try_from(MEDIA_WITHIN.as_millis()).unwrap_or(u64::MAX);
        let flowing = self.samples.iter().find(|s| {
            matches!(s.ice.as_deref(), Some("connected" | "completed"))
                && s.dtls.as_deref() == Some("connected")
                && s.inbound > MIN_PACKETS
                && s.outbound > MIN_PACKETS
        });
        let Some(sample) = flowing else {
            return Err(format!(
                "no sample with ICE and DTLS connected and > {MIN_PACKETS} packets each way; last: {:?}",
                self.samples.last()
            ));
        };
        if sample.ms > limit {
            return Err(format!(
                "media flowed only {} ms after confirmation",
                sample.ms - confirmed
            ));
        }
        let remote = sample.remote.as_deref().unwrap_or_default();
        if !(remote.starts_with("127.") && remote.ends_with(" udp host")) {
            return Err(format!(
                "selected remote candidate not loopback host: {remote:?}"
            ));
        }
        let local = sample.local.as_deref().unwrap_or_default();
        if !local.starts_with("127.") {
            return Err(format!("selected local candidate not loopback: {local:?}"));
        }
        Ok(sample)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(sample: &str) -> CallReport {
        let json = format!(
            r#"{{"direction":"outgoing","call_id":"c1","states":[{{"ms":100,"state":"confirmed"}}],
               "ice_states":[],"samples":[{sample}],"bye":{{"direction":"in","status":200}},
               "error":null,"failed_status":null,"local_sdp":null,"remote_sdp":null}}"#
        );
        match serde_json::from_str(&json) {
            Ok(call) => call,
            Err(e) => panic!("{e}: {json}"),
        }
    }

    const GOOD: &str = r#"{"ms":1500,"ice":"connected","connection":"connected","dtls":"connected",
        "inbound":53,"outbound":54,"codec":"audio/opus","local":"127.0.0.1:5000 udp prflx",
        "remote":"127.0.0.1:6000 udp host"}"#;

    #[test]
    fn media_on_loopback_within_the_window_passes() {
        let report = call(GOOD);
        assert_eq!(report.check_media().map(|s| s.inbound), Ok(53));
        assert_eq!(report.bye.map(|b| b.status), Some(200));
    }

    #[test]
    fn media_off_loopback_late_or_thin_fails() {
        let off = GOOD.replace("127.0.0.1:5000", "192.0.2.2:5000");
        assert!(call(&off).check_media().is_err());
        let prflx = GOOD.replace("6000 udp host", "6000 udp prflx");
        assert!(call(&prflx).check_media().is_err());
        let late = GOOD.replace("\"ms\":1500", "\"ms\":15101");
        assert!(call(&late).check_media().is_err());
        let thin = GOOD.replace("\"inbound\":53", "\"inbound\":50");
        assert!(call(&thin).check_media().is_err());
        let no_dtls = GOOD.replace("\"dtls\":\"connected\"", "\"dtls\":\"connecting\"");
        assert!(call(&no_dtls).check_media().is_err());
    }
}
