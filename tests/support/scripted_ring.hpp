#pragma once
// ScriptedRing: the engine seam's third implementation, for unit tests of the relays' error
// paths. It carries nothing out by itself: every SQE submitted is recorded, and stays pending
// until the test completes it with the result it chooses (a short send, -ENOBUFS, a multishot
// ending, a CQE that comes after the slot's close...). A few helpers do what the kernel would do
// where the test has nothing to choose: a receive into the next provided buffer (read as the
// kernel reads the ring: buf_rings.hpp), a linked connect and its timeout, cancels by user_data
// and by fd, and closes (the fd is really closed, so a test leaks nothing).
//
// Nothing waits: submit_and_wait() returns -ETIME when no CQE is posted.
#include <doctest/doctest.h>
#include <liburing.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <deque>
#include <span>
#include <string>
#include <vector>

#include "net/engine/buf_rings.hpp"
#include "net/engine/ring.hpp"
#include "net/engine/user_data.hpp"

namespace fp::test {

class ScriptedRing final : public net::Ring {
  public:
    explicit ScriptedRing(const net::RingFeatures& f = {}) { features_ = f; }

    std::string describe() const override { return "scripted"; }
    io_uring_sqe* sqe() noexcept override {
        if (fail_after_ > 0) {
            --fail_after_;
        } else if (fail_sqes_ > 0) {
            --fail_sqes_;
            return nullptr;
        }
        io_uring_sqe& s = sq_.emplace_back();  // (a deque: earlier SQEs stay where they are)
        std::memset(&s, 0, sizeof s);
        return &s;
    }
    void reserve(unsigned) noexcept override {}
    int submit() noexcept override {
        const int n = int(sq_.size());
        for (const io_uring_sqe& s : sq_) {
            ++submitted_;
            if (s.opcode == IORING_OP_CLOSE && auto_close) {
                post(s.user_data, ::close(s.fd) == 0 ? 0 : -errno);
                continue;
            }
            pending_.push_back(s);
        }
        sq_.clear();
        return n;
    }
    int submit_and_wait(const __kernel_timespec*) noexcept override {
        const int n = submit();
        return cq_.empty() ? -ETIME : n;
    }
    int register_buf_ring(io_uring_buf_reg& reg) noexcept override { return bufs_.add(reg); }
    void unregister_buf_ring(std::uint16_t group) noexcept override { bufs_.remove(group); }

    // --- The test's side.
    bool auto_close = true;  // CLOSE is carried out at submission (the fd closed, res 0)
    // After `after` more SQEs, the next n sqe() calls find the SQ full and its submission
    // failing (null).
    void fail_sqes(unsigned n, unsigned after = 0) {
        fail_sqes_ = n;
        fail_after_ = after;
    }

    // SQEs submitted without their final CQE yet, in submission order.
    const std::deque<io_uring_sqe>& pending() const { return pending_; }
    std::size_t submitted() const { return submitted_; }
    // The first pending SQE of `op` (and `side`, and `opcode` when given), or null.
    const io_uring_sqe* find(net::Op op, int side = -1, int opcode = -1) const {
        for (const io_uring_sqe& s : pending_) {
            const net::Tag t = net::Tag::unpack(s.user_data);
            if (t.op == op && (side < 0 || int(t.side) == side) &&
                (opcode < 0 || s.opcode == opcode))
                return &s;
        }
        return nullptr;
    }
    std::size_t count(net::Op op) const {
        return std::size_t(std::count_if(pending_.begin(), pending_.end(), [&](const auto& s) {
            return net::Tag::unpack(s.user_data).op == op;
        }));
    }
    // The same, failing the test when there is none (a copy: completing it removes it).
    io_uring_sqe need(net::Op op, int side = -1, int opcode = -1) const {
        const io_uring_sqe* s = find(op, side, opcode);
        REQUIRE_MESSAGE(s, "no pending SQE of op " << int(op) << " side " << side);
        return *s;
    }

    // Posts a CQE for the pending SQE `s`; without IORING_CQE_F_MORE it is its last.
    void complete(const io_uring_sqe& s, int res, unsigned flags = 0) {
        const io_uring_sqe done = s;  // (s may be an entry of pending_)
        post(done.user_data, res, flags);
        if (!(flags & IORING_CQE_F_MORE)) forget(done);
    }
    // A CQE with a user_data of the test's choosing (one no pending SQE has, say).
    void post(std::uint64_t user_data, int res, unsigned flags = 0) {
        cq_.push_back(io_uring_cqe{user_data, res, flags});
    }
    // A receive of `bytes` into the next buffer of the SQE's group, as the kernel fills it (a
    // multishot goes on unless `more` is false). False when the group has no buffer published:
    // then the kernel ends the receive with -ENOBUFS, which the test may post.
    // No bytes: the peer's FIN (res 0, no buffer, the multishot's end).
    bool receive(const io_uring_sqe& s, std::span<const std::byte> bytes, bool more = true) {
        if (bytes.empty()) {
            complete(s, 0);
            return true;
        }
        io_uring_buf* b = bufs_.next(s.buf_group);
        if (!b) return false;
        REQUIRE(bytes.size() <= b->len);
        std::memcpy(reinterpret_cast<void*>(b->addr), bytes.data(), bytes.size());
        bufs_.consume(s.buf_group);
        complete(s, int(bytes.size()),
                 IORING_CQE_F_BUFFER | unsigned(b->bid) << IORING_CQE_BUFFER_SHIFT |
                     (more ? IORING_CQE_F_MORE : 0u));
        return true;
    }
    bool receive(const io_uring_sqe& s, const std::string& text, bool more = true) {
        return receive(s, std::as_bytes(std::span(text.data(), text.size())), more);
    }
    // A linked op (a connect) completes with `res`: its LINK_TIMEOUT, the SQE after it, is
    // cancelled. timed_out: the timeout fired instead (the op -ECANCELED, the timeout -ETIME).
    void complete_linked(const io_uring_sqe& op, int res, bool timed_out = false) {
        const io_uring_sqe* t = linked_timeout(op);
        REQUIRE(t);
        const io_uring_sqe timeout = *t;
        if (timed_out) {
            complete(op, -ECANCELED);
            complete(timeout, -ETIME);
        } else {
            complete(op, res);
            complete(timeout, -ECANCELED);
        }
    }
    // Every pending ASYNC_CANCEL (and TIMEOUT_REMOVE) carried out as the kernel does: each op it
    // matches (by user_data, or by fd with IORING_ASYNC_CANCEL_FD; one, or all) completes with
    // -ECANCELED (a linked timeout of one with it), then the cancel with the count (ALL), 0 or
    // -ENOENT. Returns how many cancels ran.
    unsigned carry_cancels() {
        unsigned ran = 0;
        for (;;) {
            auto it = std::find_if(pending_.begin(), pending_.end(), [](const io_uring_sqe& s) {
                return s.opcode == IORING_OP_ASYNC_CANCEL || s.opcode == IORING_OP_TIMEOUT_REMOVE;
            });
            if (it == pending_.end()) return ran;
            const io_uring_sqe c = *it;
            pending_.erase(it);
            ++ran;
            const unsigned f = c.opcode == IORING_OP_ASYNC_CANCEL ? c.cancel_flags : 0;
            const bool all = f & (IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_ANY);
            int n = 0;
            for (bool found = true; found && (all || n == 0);) {
                found = false;
                for (const io_uring_sqe& s : pending_) {
                    const bool match = (f & IORING_ASYNC_CANCEL_FD)
                                           ? s.fd == c.fd && uses_fd(s.opcode)
                                           : s.user_data == c.addr;
                    if (!match) continue;
                    const io_uring_sqe target = s;
                    if (const io_uring_sqe* t = linked_timeout(target)) {
                        const io_uring_sqe timeout = *t;
                        complete(timeout, -ECANCELED);
                    }
                    complete(target, -ECANCELED);
                    ++n;
                    found = true;
                    break;
                }
            }
            post(c.user_data, all ? n : (n ? 0 : -ENOENT));
        }
    }
    // Completes every pending op, nothing chosen (for the end of a test): cancels carried out,
    // then whatever is left -ECANCELED.
    void cancel_everything() {
        carry_cancels();
        while (!pending_.empty())
            complete(io_uring_sqe(pending_.front()), -ECANCELED);
    }
    bool has_cqes() const { return !cq_.empty(); }
    // Provided buffers the group's registrant has published and no receive has used.
    unsigned buffers(std::uint16_t group = 0) const { return bufs_.available(group); }

  protected:
    unsigned drain_cqes(CqeFn fn, void* ctx) noexcept override {
        batch_.clear();
        batch_.swap(cq_);
        for (io_uring_cqe& c : batch_)
            fn(ctx, &c);
        return unsigned(batch_.size());
    }

  private:
    static bool uses_fd(std::uint8_t opcode) {
        return opcode != IORING_OP_ASYNC_CANCEL && opcode != IORING_OP_TIMEOUT &&
               opcode != IORING_OP_TIMEOUT_REMOVE && opcode != IORING_OP_LINK_TIMEOUT &&
               opcode != IORING_OP_NOP;
    }
    // The LINK_TIMEOUT submitted right after `op` (flagged IOSQE_IO_LINK), if still pending.
    const io_uring_sqe* linked_timeout(const io_uring_sqe& op) const {
        if (!(op.flags & IOSQE_IO_LINK)) return nullptr;
        for (std::size_t k = 0; k + 1 < pending_.size(); ++k)
            if (pending_[k].user_data == op.user_data &&
                pending_[k + 1].opcode == IORING_OP_LINK_TIMEOUT)
                return &pending_[k + 1];
        return nullptr;
    }
    void forget(const io_uring_sqe& done) {
        auto it = std::find_if(pending_.begin(), pending_.end(), [&](const io_uring_sqe& s) {
            return std::memcmp(&s, &done, sizeof s) == 0;
        });
        if (it != pending_.end()) pending_.erase(it);
    }

    std::deque<io_uring_sqe> sq_;       // prepared, not submitted
    std::deque<io_uring_sqe> pending_;  // submitted, no final CQE yet
    std::vector<io_uring_cqe> cq_, batch_;
    net::BufRings bufs_;
    std::size_t submitted_ = 0;
    unsigned fail_sqes_ = 0, fail_after_ = 0;
};

}  // namespace fp::test
