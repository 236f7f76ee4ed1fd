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
static_assert(IORING_SETUP_SINGLE_ISSUER == 1U << 12);
static_assert(IORING_SETUP_DEFER_TASKRUN == 1U << 13);
static_assert(IORING_SETUP_COOP_TASKRUN == 1U << 8);
static_assert(IORING_CQE_F_BUFFER == 1U << 0 && IORING_CQE_F_MORE == 1U << 1);

}  // namespace fp::net::uapi
