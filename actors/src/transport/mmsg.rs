//! Batched datagram I/O with Linux `recvmmsg(2)` and `sendmmsg(2)`.
//!
//! At tens of thousands of SIP messages per second the cost of one system call per datagram
//! dominates; these calls move up to a whole batch per system call. Neither the standard library
//! nor tokio exposes them, so this module calls libc directly.
#![allow(unsafe_code)] // The only unsafe code of the crate: two libc calls and sockaddr reads,
// each with its safety argument below.

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use bytes::Bytes;
use socket2::SockAddr;

/// Room for one `IP_PKTINFO` or `IPV6_PKTINFO` control message (header plus `in6_pktinfo`,
/// 40 octets, rounded up), as `u64`s so that the buffer is aligned like a `cmsghdr`.
const CONTROL_WORDS: usize = 8;

/// Receive buffers for one batch, reused across calls.
pub(super) struct RecvBatch {
    /// One buffer per datagram, each `buf_size` long.
    bufs: Vec<Box<[u8]>>,
    /// Source address storage, one per datagram.
    addrs: Vec<libc::sockaddr_storage>,
    /// Control-message buffers, one per datagram, for the packet's destination address.
    control: Vec<[u64; CONTROL_WORDS]>,
    /// Results of the last call.
    results: Vec<RecvResult>,
}

#[derive(Clone, Copy)]
struct RecvResult {
    len: usize,
    truncated: bool,
    source: Option<SocketAddr>,
    destination: Option<IpAddr>,
}

/// One received datagram.
pub(super) struct Received<'a> {
    /// The octets received (at most the buffer size).
    pub(super) data: &'a [u8],
    /// The datagram was longer than the buffer and was cut (`MSG_TRUNC`).
    pub(super) truncated: bool,
    /// Its source.
    pub(super) source: Option<SocketAddr>,
    /// The address it was sent to, when packet info is enabled ([`enable_packet_info`]).
    pub(super) destination: Option<IpAddr>,
}

impl RecvBatch {
    /// Buffers for `batch` datagrams of up to `buf_size` octets each.
    pub(super) fn new(batch: usize, buf_size: usize) -> Self {
        Self {
            bufs: (0..batch)
                .map(|_| vec![0u8; buf_size].into_boxed_slice())
                .collect(),
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
            addrs: (0..batch).map(|_| unsafe { mem::zeroed() }).collect(),
            control: vec![[0; CONTROL_WORDS]; batch],
            results: Vec::with_capacity(batch),
        }
    }

    /// The datagrams received by the last [`recv`] call.
    pub(super) fn received(&self) -> impl Iterator<Item = Received<'_>> {
        self.results
            .iter()
            .zip(&self.bufs)
            .map(|(r, buf)| Received {
                data: buf.get(..r.len).unwrap_or(buf),
                truncated: r.truncated,
                source: r.source,
                destination: r.destination,
            })
    }
}

/// Reads as many datagrams as are queued, up to the batch size, without blocking
/// (`MSG_DONTWAIT`). Returns the number read; `WouldBlock` when none is queued.
pub(super) fn recv(fd: RawFd, batch: &mut RecvBatch) -> io::Result<usize> {
    batch.results.clear();
    let n = batch
        .bufs
        .len()
        .min(batch.addrs.len())
        .min(batch.control.len());
    let mut iovecs: Vec<libc::iovec> = batch
        .bufs
        .iter_mut()
        .take(n)
        .map(|buf| libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = iovecs
        .iter_mut()
        .zip(batch.addrs.iter_mut())
        .zip(batch.control.iter_mut())
        .map(|((iov, addr), control)| {
            // SAFETY: mmsghdr is plain old data; all-zero (null pointers, zero lengths) is
            // valid, and the fields that matter are set right after.
            let mut hdr: libc::mmsghdr = unsafe { mem::zeroed() };
            hdr.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            hdr.msg_hdr.msg_namelen = socklen_of::<libc::sockaddr_storage>();
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = control.as_mut_ptr().cast();
            // The field is size_t on glibc and socklen_t on musl; 64 fits both.
            hdr.msg_hdr.msg_controllen = (CONTROL_WORDS * 8) as _;
            hdr
        })
        .collect();
    let vlen = libc::c_uint::try_from(hdrs.len()).unwrap_or(libc::c_uint::MAX);
    // SAFETY: `hdrs` holds `vlen` initialised headers whose name, control and iovec pointers
    // point into `batch.addrs`, `batch.control`, `iovecs` and `batch.bufs`, all alive and not
    // otherwise borrowed until the call returns; each iovec length is its buffer's length, each
    // namelen the size of its sockaddr_storage and each controllen the size of its control
    // buffer, so the kernel writes only inside them. A null timeout is allowed.
    let ret = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            vlen,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    let Ok(count) = usize::try_from(ret) else {
        return Err(io::Error::last_os_error());
    };
    for (hdr, addr) in hdrs.iter().zip(&batch.addrs).take(count) {
        let len = usize::try_from(hdr.msg_len).unwrap_or(usize::MAX);
        batch.results.push(RecvResult {
            len,
            truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            source: to_socket_addr(addr, hdr.msg_hdr.msg_namelen),
            destination: packet_destination(&hdr.msg_hdr),
        });
    }
    Ok(count)
}

/// Sends the datagrams of `batch` in order with one `sendmmsg` call, without blocking. Returns
/// how many were sent (a prefix of `batch`); an error means the first one could not be sent.
pub(super) fn send(fd: RawFd, batch: &[(SocketAddr, Bytes)]) -> io::Result<usize> {
    if batch.is_empty() {
        return Ok(0);
    }
    let addrs: Vec<SockAddr> = batch
        .iter()
        .map(|(addr, _)| SockAddr::from(*addr))
        .collect();
    let mut iovecs: Vec<libc::iovec> = batch
        .iter()
        .map(|(_, payload)| libc::iovec {
            // The kernel only reads through iov_base for a send; the cast to *mut is required
            // by the C signature.
            iov_base: payload.as_ptr().cast_mut().cast(),
            iov_len: payload.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = iovecs
        .iter_mut()
        .zip(&addrs)
        .map(|(iov, addr)| {
            // SAFETY: as in `recv`, all-zero is a valid mmsghdr.
            let mut hdr: libc::mmsghdr = unsafe { mem::zeroed() };
            hdr.msg_hdr.msg_name = addr.as_ptr().cast_mut().cast();
            hdr.msg_hdr.msg_namelen = addr.len();
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
            hdr
        })
        .collect();
    let vlen = libc::c_uint::try_from(hdrs.len()).unwrap_or(libc::c_uint::MAX);
    // SAFETY: every header points at a live SockAddr in `addrs` with its exact length and at one
    // iovec in `iovecs` describing a live, immutable `Bytes` payload; sendmmsg only reads them
    // (it writes msg_len into the headers, which we own mutably).
    let ret = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), vlen, libc::MSG_DONTWAIT) };
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

/// Asks the kernel to report each datagram's destination address (`IP_PKTINFO`,
/// `IPV6_RECVPKTINFO`), so that a socket bound to a wildcard address knows which local address
/// a message arrived on.
pub(super) fn enable_packet_info(fd: RawFd, ipv6: bool) -> io::Result<()> {
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    } else {
        (libc::IPPROTO_IP, libc::IP_PKTINFO)
    };
    let on: libc::c_int = 1;
    // SAFETY: the option value is a live c_int and its exact size is passed.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&on as *const libc::c_int).cast(),
            socklen_of::<libc::c_int>(),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The destination address from an `IP_PKTINFO`/`IPV6_PKTINFO` control message, if present.
fn packet_destination(msg: &libc::msghdr) -> Option<IpAddr> {
    // SAFETY: `msg` was filled by recvmmsg: msg_control points at a live buffer of which the
    // kernel set msg_controllen octets. CMSG_FIRSTHDR/CMSG_NXTHDR stay within that length and
    // return null at its end; the data of a control message is read unaligned, after checking
    // its level and type say which struct it holds.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let info = data.cast::<libc::in_pktinfo>().read_unaligned();
                    return Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        info.ipi_addr.s_addr,
                    ))));
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let info = data.cast::<libc::in6_pktinfo>().read_unaligned();
                    return Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                }
                _ => cmsg = libc::CMSG_NXTHDR(msg, cmsg),
            }
        }
    }
    None
}

fn socklen_of<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// Converts a kernel-filled `sockaddr_storage` into a std address.
fn to_socket_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = usize::try_from(len).ok()?;
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, which is smaller than
            // and no more aligned than sockaddr_storage.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}
