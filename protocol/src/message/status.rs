//! Status codes (RFC 3261 §7.2, §21).

use std::fmt;

/// A response status code (100..=699).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(pub u16);

impl StatusCode {
    /// 100 Trying
    pub const TRYING: Self = Self(100);
    /// 180 Ringing
    pub const RINGING: Self = Self(180);
    /// 181 Call Is Being Forwarded
    pub const CALL_IS_BEING_FORWARDED: Self = Self(181);
    /// 182 Queued
    pub const QUEUED: Self = Self(182);
    /// 183 Session Progress
    pub const SESSION_PROGRESS: Self = Self(183);
    /// 200 OK
    pub const OK: Self = Self(200);
    /// 202 Accepted
    pub const ACCEPTED: Self = Self(202);
    /// 300 Multiple Choices
    pub const MULTIPLE_CHOICES: Self = Self(300);
    /// 301 Moved Permanently
    pub const MOVED_PERMANENTLY: Self = Self(301);
    /// 302 Moved Temporarily
    pub const MOVED_TEMPORARILY: Self = Self(302);
    /// 400 Bad Request
    pub const BAD_REQUEST: Self = Self(400);
    /// 401 Unauthorized
    pub const UNAUTHORIZED: Self = Self(401);
    /// 403 Forbidden
    pub const FORBIDDEN: Self = Self(403);
    /// 404 Not Found
    pub const NOT_FOUND: Self = Self(404);
    /// 405 Method Not Allowed
    pub const METHOD_NOT_ALLOWED: Self = Self(405);
    /// 407 Proxy Authentication Required
    pub const PROXY_AUTHENTICATION_REQUIRED: Self = Self(407);
    /// 408 Request Timeout
    pub const REQUEST_TIMEOUT: Self = Self(408);
    /// 410 Gone
    pub const GONE: Self = Self(410);
    /// 413 Request Entity Too Large
    pub const REQUEST_ENTITY_TOO_LARGE: Self = Self(413);
    /// 414 Request-URI Too Long
    pub const REQUEST_URI_TOO_LONG: Self = Self(414);
    /// 415 Unsupported Media Type
    pub const UNSUPPORTED_MEDIA_TYPE: Self = Self(415);
    /// 416 Unsupported URI Scheme
    pub const UNSUPPORTED_URI_SCHEME: Self = Self(416);
    /// 420 Bad Extension
    pub const BAD_EXTENSION: Self = Self(420);
    /// 421 Extension Required
    pub const EXTENSION_REQUIRED: Self = Self(421);
    /// 423 Interval Too Brief
    pub const INTERVAL_TOO_BRIEF: Self = Self(423);
    /// 430 Flow Failed (RFC 5626)
    pub const FLOW_FAILED: Self = Self(430);
    /// 439 First Hop Lacks Outbound Support (RFC 5626)
    pub const FIRST_HOP_LACKS_OUTBOUND_SUPPORT: Self = Self(439);
    /// 480 Temporarily Unavailable
    pub const TEMPORARILY_UNAVAILABLE: Self = Self(480);
    /// 481 Call/Transaction Does Not Exist
    pub const CALL_TRANSACTION_DOES_NOT_EXIST: Self = Self(481);
    /// 482 Loop Detected
    pub const LOOP_DETECTED: Self = Self(482);
    /// 483 Too Many Hops
    pub const TOO_MANY_HOPS: Self = Self(483);
    /// 484 Address Incomplete
    pub const ADDRESS_INCOMPLETE: Self = Self(484);
    /// 485 Ambiguous
    pub const AMBIGUOUS: Self = Self(485);
    /// 486 Busy Here
    pub const BUSY_HERE: Self = Self(486);
    /// 487 Request Terminated
    pub const REQUEST_TERMINATED: Self = Self(487);
    /// 488 Not Acceptable Here
    pub const NOT_ACCEPTABLE_HERE: Self = Self(488);
    /// 491 Request Pending
    pub const REQUEST_PENDING: Self = Self(491);
    /// 500 Server Internal Error
    pub const SERVER_INTERNAL_ERROR: Self = Self(500);
    /// 501 Not Implemented
    pub const NOT_IMPLEMENTED: Self = Self(501);
    /// 502 Bad Gateway
    pub const BAD_GATEWAY: Self = Self(502);
    /// 503 Service Unavailable
    pub const SERVICE_UNAVAILABLE: Self = Self(503);
    /// 504 Server Time-out
    pub const SERVER_TIMEOUT: Self = Self(504);
    /// 505 Version Not Supported
    pub const VERSION_NOT_SUPPORTED: Self = Self(505);
    /// 513 Message Too Large
    pub const MESSAGE_TOO_LARGE: Self = Self(513);
    /// 600 Busy Everywhere
    pub const BUSY_EVERYWHERE: Self = Self(600);
    /// 603 Decline
    pub const DECLINE: Self = Self(603);
    /// 604 Does Not Exist Anywhere
    pub const DOES_NOT_EXIST_ANYWHERE: Self = Self(604);
    /// 606 Not Acceptable
    pub const NOT_ACCEPTABLE: Self = Self(606);

    /// 1xx
    pub fn is_provisional(self) -> bool {
        (100..200).contains(&self.0)
    }
    /// 2xx
    pub fn is_success(self) -> bool {
        (200..300).contains(&self.0)
    }
    /// 3xx
    pub fn is_redirection(self) -> bool {
        (300..400).contains(&self.0)
    }
    /// 4xx, 5xx or 6xx
    pub fn is_error(self) -> bool {
        self.0 >= 400
    }
    /// 200 and above
    pub fn is_final(self) -> bool {
        self.0 >= 200
    }
    /// The class digit (1..=6).
    pub fn class(self) -> u16 {
        self.0 / 100
    }

    /// The RFC 3261 §21 default reason phrase, or `""` if unknown.
    pub fn default_reason(self) -> &'static str {
        match self.0 {
            100 => "Trying",
            180 => "Ringing",
            181 => "Call Is Being Forwarded",
            182 => "Queued",
            183 => "Session Progress",
            200 => "OK",
            202 => "Accepted",
            300 => "Multiple Choices",
            301 => "Moved Permanently",
            302 => "Moved Temporarily",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            407 => "Proxy Authentication Required",
            408 => "Request Timeout",
            410 => "Gone",
            413 => "Request Entity Too Large",
            414 => "Request-URI Too Long",
            415 => "Unsupported Media Type",
            416 => "Unsupported URI Scheme",
            420 => "Bad Extension",
            421 => "Extension Required",
            423 => "Interval Too Brief",
            430 => "Flow Failed",
            439 => "First Hop Lacks Outbound Support",
            480 => "Temporarily Unavailable",
            481 => "Call/Transaction Does Not Exist",
            482 => "Loop Detected",
            483 => "Too Many Hops",
            484 => "Address Incomplete",
            485 => "Ambiguous",
            486 => "Busy Here",
            487 => "Request Terminated",
            488 => "Not Acceptable Here",
            491 => "Request Pending",
            500 => "Server Internal Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Server Time-out",
            505 => "Version Not Supported",
            513 => "Message Too Large",
            600 => "Busy Everywhere",
            603 => "Decline",
            604 => "Does Not Exist Anywhere",
            606 => "Not Acceptable",
            _ => "",
        }
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert!(StatusCode::TRYING.is_provisional());
        assert!(!StatusCode::TRYING.is_final());
        assert!(StatusCode::OK.is_success());
        assert!(StatusCode::BAD_REQUEST.is_final());
        assert_eq!(StatusCode::BAD_REQUEST.default_reason(), "Bad Request");
    }
}
