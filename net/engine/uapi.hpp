#pragma once
// io_uring UAPI constants newer than Debian 12's liburing 2.3 headers, in one place. Each value is
// the kernel's (include/uapi/linux/io_uring.h); where the installed header already has the name,
// a static_assert checks it agrees.
#include <liburing.h>

namespace fp::net::uapi {

// io_uring_buf_reg.flags (the `pad` field in 2.3): consume provided buffers incrementally (6.12).
inline constexpr unsigned kPbufRingInc = 2;
// cqe->flags: the provided buffer is not used up and stays at the head of the ring (6.12).
inline constexpr unsigned kCqeBufMore = 1U << 4;

#ifdef IOU_PBUF_RING_INC
static_assert(IOU_PBUF_RING_INC == kPbufRingInc);
#endif
#ifdef IORING_CQE_F_BUF_MORE
static_assert(IORING_CQE_F_BUF_MORE == kCqeBufMore);
#endif
// IORING_OP_URING_CMD on a socket: cmd_op SOCKET_URING_OP_SETSOCKOPT (6.7). liburing 2.3 has no
// io_uring_prep_cmd_sock(); the kernel reads level and optname from the two halves of `addr`,
// optlen from `file_index` and optval from `addr3`.
inline constexpr unsigned kSocketUringOpSetsockopt = 3;

template <class T>
inline void prep_setsockopt(io_uring_sqe* sqe, int fd, int level, int optname, const T* optval) {
    io_uring_prep_rw(IORING_OP_URING_CMD, sqe, fd, nullptr, 0, 0);
    sqe->cmd_op = kSocketUringOpSetsockopt;
    sqe->addr = static_cast<__u64>(static_cast<unsigned>(level)) |
                static_cast<__u64>(static_cast<unsigned>(optname)) << 32;
    sqe->file_index = sizeof *optval;
    sqe->addr3 = reinterpret_cast<__u64>(optval);
}

// Zero-copy sends: sqe->ioprio flag asking the notification to say whether the kernel copied
// after all (6.2; loopback always does), and that bit in the notification's result.
inline constexpr unsigned kSendZcReportUsage = 1U << 3;
inline constexpr unsigned kNotifUsageZcCopied = 1U << 31;
#ifdef IORING_SEND_ZC_REPORT_USAGE
static_assert(IORING_SEND_ZC_REPORT_USAGE == kSendZcReportUsage);
#endif

// io_uring_register opcodes and argument of NAPI busy polling (6.9); liburing 2.3 has no
// io_uring_register_napi().
inline constexpr unsigned kRegisterNapi = 27;
inline constexpr unsigned kUnregisterNapi = 28;
struct Napi {
    __u32 busy_poll_to;  // microseconds
    __u8 prefer_busy_poll;
    __u8 pad[3];
    __u64 resv;
};
static_assert(sizeof(Napi) == 16);

// IORING_OP_FIXED_FD_INSTALL (6.8): a plain fd (O_CLOEXEC) for the direct descriptor `index`,
// sharing its socket; the CQE's result is the new fd.
inline constexpr unsigned kOpFixedFdInstall = 54;
#ifdef IORING_OP_FIXED_FD_INSTALL
static_assert(IORING_OP_FIXED_FD_INSTALL == kOpFixedFdInstall);
#endif

inline void prep_fixed_fd_install(io_uring_sqe* sqe, int index) {
    io_uring_prep_rw(kOpFixedFdInstall, sqe, index, nullptr, 0, 0);
    sqe->flags = IOSQE_FIXED_FILE;
}

// Multishot recv with limits (6.17): `len` caps each receive, `optlen` (the `file_index` field in
// 2.3) the bytes of the whole multishot, after which it ends (a CQE without IORING_CQE_F_MORE).
// Older kernels refuse the per-receive cap with -EINVAL.
inline void prep_recv_multishot_capped(io_uring_sqe* sqe, int fd, unsigned each, unsigned total) {
    io_uring_prep_recv_multishot(sqe, fd, nullptr, each, 0);
    sqe->file_index = total;
}

// io_uring_params.features: send and receive bundles (6.10); sqe->ioprio flag asking a recv with
// buffer select to fill several provided buffers, in ring order, in one completion (whose buffer
// id is the first one's).
inline constexpr unsigned kFeatRecvsendBundle = 1U << 14;
inline constexpr unsigned kRecvsendBundle = 1U << 4;
#ifdef IORING_FEAT_RECVSEND_BUNDLE
static_assert(IORING_FEAT_RECVSEND_BUNDLE == kFeatRecvsendBundle);
#endif
#ifdef IORING_RECVSEND_BUNDLE
static_assert(IORING_RECVSEND_BUNDLE == kRecvsendBundle);
#endif

// io_uring_params.features: a wait for a batch of CQEs with a minimum timeout (6.12): after
// min_wait_usec the wait returns with whatever has come, if anything (io_uring_getevents_arg's
// `pad` became min_wait_usec; liburing 2.3 has neither name).
inline constexpr unsigned kFeatMinTimeout = 1U << 15;
#ifdef IORING_FEAT_MIN_TIMEOUT
static_assert(IORING_FEAT_MIN_TIMEOUT == kFeatMinTimeout);
#endif
struct GeteventsArg {
    __u64 sigmask;
    __u32 sigmask_sz;
    __u32 min_wait_usec;
    __u64 ts;
};
static_assert(sizeof(GeteventsArg) == sizeof(io_uring_getevents_arg));

static_assert(IORING_SETUP_SINGLE_ISSUER == 1U << 12);
static_assert(IORING_SETUP_DEFER_TASKRUN == 1U << 13);
static_assert(IORING_SETUP_COOP_TASKRUN == 1U << 8);
static_assert(IORING_CQE_F_BUFFER == 1U << 0 && IORING_CQE_F_MORE == 1U << 1);

}  // namespace fp::net::uapi
