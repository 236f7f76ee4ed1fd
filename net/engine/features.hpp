#pragma once
// What this kernel's io_uring offers fragproxy, probed once at start by trying each piece on a
// small ring of its own (never assumed from the kernel version), and the receive path it allows:
//   incremental  provided-buffer ring with incremental consumption (IOU_PBUF_RING_INC, 6.12):
//                whole pages shared by every connection, filled piece by piece
//   fragments    provided-buffer ring of fixed-size fragments carved by the worker's FragCache
//                (provided-buffer rings, 5.19; multishot recv, 6.0)
// `fragproxy --features` prints the report; the start-up line names the path chosen and why.
#include <string>

#include "net/base/modes.hpp"

namespace fp::net {

struct KernelFeatures {
    int setup_error = 0;          // errno of io_uring_setup, 0 when io_uring is there
    std::string refused;          // why it is refused, when known (ring_error_cause)
    unsigned setup_flags = 0;     // the best set of setup flags the kernel took
    bool socket_op = false;       // IORING_OP_SOCKET (5.19)
    bool sockopt_cmd = false;     // IORING_OP_URING_CMD (socket commands: setsockopt, 6.7)
    bool send_zc = false;         // IORING_OP_SEND_ZC and SENDMSG_ZC (6.1)
    bool pbuf_ring = false;       // provided-buffer rings (5.19)
    bool pbuf_inc = false;        // ... with incremental consumption (6.12)
    bool recv_multishot = false;  // multishot recv with buffer select (6.0)
    bool bundles = false;         // IORING_FEAT_RECVSEND_BUNDLE (6.10)
    bool min_timeout = false;     // IORING_FEAT_MIN_TIMEOUT (6.12): batch waits
    bool direct = false;  // direct descriptors: accept and socket into a file table, fd install

    bool io_uring() const noexcept { return setup_error == 0; }
    // The task-run mode setup_flags stand for: what `taskrun: auto` resolves to, so that every
    // worker sets its ring up as the probe's was (Ring::best with it takes exactly those flags).
    TaskRun taskrun() const noexcept;
    // The receive path `want` resolves to here (kAuto: incremental where the kernel has it), or
    // kAuto when this kernel can run neither (the reason is then why_not()).
    RecvPath resolve(RecvPath want) const noexcept;
    std::string why_not(RecvPath want) const;
    // Why io_uring cannot run: "io_uring_setup: EPERM (the cause)"; "" when it can.
    std::string refusal() const;
    std::string describe() const;  // several lines, one per feature
};

// Probes on a ring of its own (a few syscalls; start-up path, never throws).
KernelFeatures probe_kernel();

}  // namespace fp::net
