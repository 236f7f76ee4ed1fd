#include "net/worker/worker.hpp"

#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>

#include "net/engine/epoll_ring.hpp"
#include "net/engine/uring_ring.hpp"

namespace fp::net {
namespace {

constexpr unsigned kRingEntries = 4096;  // SQ entries per worker (the CQ is twice that)
constexpr __kernel_timespec kStarvedWait{0, 1000000};  // receives wait for pages: look in 1 ms
// A pass that handled this many UDP CQEs (datagrams received, batches sent) makes the next wait
// one for a batch of kBatchCqes, bounded by batch_wait_us. UDP only: datagrams are what a fuller
// pass batches (one GSO send per session and pass); TCP receives batch themselves (bundles), and
// its connections' round trips only wait longer (bench/compare.py, peer fragproxy-nobatch: with
// every CQE counted, new connections cost 15% more CPU and 1,000 keep-alive connections made 14%
// fewer requests per second).
constexpr unsigned kBulkUdpCqes = 8;
constexpr unsigned kBatchCqes = 32;

}  // namespace

Worker::Worker(std::shared_ptr<const WorkerSettings> settings, unsigned index, AccessQueue* log)
    : settings_(std::move(settings)), index_(index), log_(log), current_(settings_) {
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
    if (wake_fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
}

Worker::~Worker() {
    stop();
    ::close(wake_fd_);
}

void Worker::start() {
    std::promise<void> ready;
    auto started = ready.get_future();
    thread_ = std::thread([this, &ready] { run(&ready); });
    try {
        started.get();
    } catch (...) {
        thread_.join();
        throw;
    }
}

void Worker::command(unsigned c) noexcept {
    commands_.fetch_or(c, std::memory_order_release);
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
}

void Worker::drain() {
    if (thread_.joinable()) command(kDrain);
}

std::future<std::string> Worker::reload(std::shared_ptr<const WorkerSettings> next) {
    std::future<std::string> done;
    {
        std::lock_guard lock(reload_mu_);
        reload_next_ = std::move(next);
        reload_done_ = std::promise<std::string>();
        done = reload_done_.get_future();
    }
    if (thread_.joinable())
        command(kReload);
    else
        apply_reload();  // not started: nothing runs to race with
    return done;
}

void Worker::stop() {
    if (!thread_.joinable()) return;
    command(kStop);
    thread_.join();
}

void Worker::run(std::promise<void>* ready) noexcept {
    char name[16];
    std::snprintf(name, sizeof name, "fp-worker-%u", index_);
    ::pthread_setname_np(::pthread_self(), name);  // what top -H and /proc/PID/task/*/comm show
    try {
        setup();
    } catch (...) {
        teardown(false);
        ended_.store(true, std::memory_order_release);
        ready->set_exception(std::current_exception());
        return;
    }
    alive_ms_.store(reactor_->now_ms(), std::memory_order_relaxed);
    ready->set_value();
    teardown(loop());
    ended_.store(true, std::memory_order_release);
}

void Worker::setup() {
    // (auto: as the start-up probe's ring was set up, the same for every worker)
    const TaskRun taskrun =
        current_->taskrun == TaskRun::kAuto ? current_->taskrun_probed : current_->taskrun;
    if (current_->backend == Backend::kEpoll)
        ring_ = std::make_unique<EpollRing>(kRingEntries);
    else
        ring_ = std::make_unique<UringRing>(UringRing::best(kRingEntries, taskrun));
    reactor_ = std::make_unique<Reactor>(*ring_);
    reactor_->update_clock();
    tcp_ = std::make_unique<TcpRelay>(*reactor_, *current_, index_, tcp_stats_, log_);
    if (!current_->udp_listeners.empty())
        udp_ = std::make_unique<UdpRelay>(*reactor_, *current_, index_, udp_stats_, log_);
    if (index_ == 0)
        std::fprintf(stderr, "fragproxy: worker ring: %s; receive: %s\n", ring_->describe().c_str(),
                     tcp_->describe().c_str());
    // NAPI busy polling: an option for NIC deployments; where the kernel (6.9) or the backend has
    // none it runs without, and says so once.
    if (current_->napi_busy_poll_us) {
        const int rc = ring_->register_napi(current_->napi_busy_poll_us);
        if (index_ == 0)
            std::fprintf(stderr, "fragproxy: io_uring NAPI busy poll %u us: %s\n",
                         current_->napi_busy_poll_us,
                         rc == 0 ? "on"
                                 : (std::string("not available, running without (") +
                                    std::strerror(-rc) + "; Linux 6.9, io_uring backend)")
                                       .c_str());
    }
    // Nothing is armed before every part is set up: a failed setup leaves nothing in flight.
    tcp_->start();
    if (udp_) udp_->start();
    arm_tick();
    arm_wake();
    ring_->submit();
}

// Returns whether it ended with nothing in flight (false: the ring failed).
bool Worker::loop() noexcept {
    const unsigned batch_us = ring_->batch_wait() ? current_->batch_wait_us : 0;
    bool busy = false;  // the last pass handled kBulkUdpCqes UDP CQEs or more
    while (!done()) {
        const bool starved = tcp_->starved() || (udp_ && udp_->starved());
        int rc;
        bool two_enters = false;  // a batch wait's submit is an enter of its own
        if (starved) {
            rc = ring_->submit_and_wait(&kStarvedWait);  // pages: look soon
        } else if (busy && batch_us) {
            rc = ring_->submit_and_wait_batch(kBatchCqes, batch_us);
            ring_stats_.batch_waits.add();
            two_enters = rc > 0;
        } else {
            rc = ring_->submit_and_wait(nullptr);
        }
        if (rc == -ETIME) rc = 0;
        ring_stats_.enters.add(two_enters ? 2 : 1);
        if (rc > 0) ring_stats_.sqes.add(unsigned(rc));
        if (rc < 0 && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN) {
            std::fprintf(stderr, "fragproxy: worker %u: io_uring_enter: %d\n", index_, rc);
            return false;
        }
        reactor_->update_clock();
        const unsigned seen = ring_->for_each_cqe([this](io_uring_cqe* cqe) { handle(cqe); });
        ring_stats_.cqes.add(seen);
        busy = std::exchange(udp_cqes_, 0) >= kBulkUdpCqes;
        after_batch();
    }
    return true;
}

void Worker::handle(io_uring_cqe* cqe) noexcept {
    const Tag t = Tag::unpack(cqe->user_data);
    reactor_->complete(cqe);
    switch (owner(t.op)) {
        case Owner::kTcp:
        case Owner::kTcpConn:
            return tcp_->handle(t, cqe);
        case Owner::kUdp:
        case Owner::kUdpSession:
            ++udp_cqes_;
            return udp_->handle(t, cqe);
        case Owner::kReactor:
            break;
    }
    if (t.op == Op::kTick && !stopping_) {  // the scan waits for the end of the batch
        tick_due_ = true;
        arm_tick();
    } else if (t.op == Op::kWake) {
        on_wake();
    }
}

// The eventfd was written: a reload, a drain (the wake is armed again, for what follows) or a
// stop. A stop that comes before the drain was seen is a stop.
void Worker::on_wake() noexcept {
    const unsigned c = commands_.exchange(0, std::memory_order_acquire);
    if (c & kStop) {
        stopping_ = true;  // a reload waiting for its answer gets one
        if (c & kReload) apply_reload();
        return begin_stop();
    }
    if (c & kReload) apply_reload();
    if ((c & kDrain) && !draining_) {
        draining_ = true;
        tcp_->drain();
        if (udp_) udp_->drain();
    }
    arm_wake();
}

// Between two batches: the listeners change, nothing else does. A UDP listener in a worker that
// had none brings its relay (its ring of receive pages) with it.
void Worker::apply_reload() noexcept {
    std::lock_guard lock(reload_mu_);
    std::string errors;
    if (stopping_ || draining_) {
        errors = "stopping: the reload was not applied";
    } else if (reload_next_) {
        current_ = std::move(reload_next_);
        if (!tcp_) {  // not started yet: start() builds the relays from current_
        } else {
            errors = tcp_->reconfigure(current_->listeners);
            std::string udp;
            if (udp_) {
                udp = udp_->reconfigure(current_->udp_listeners);
            } else if (!current_->udp_listeners.empty()) {
                try {
                    udp_ =
                        std::make_unique<UdpRelay>(*reactor_, *current_, index_, udp_stats_, log_);
                    udp_->start();
                } catch (const std::exception& e) {
                    udp_.reset();
                    udp = e.what();
                }
            }
            if (!udp.empty()) errors += (errors.empty() ? "" : "; ") + udp;
        }
    }
    reload_next_.reset();
    reload_done_.set_value(errors);
}

void Worker::after_batch() noexcept {
    tcp_->refill();
    if (udp_) udp_->after_batch();
    if (tick_due_) {
        tick_due_ = false;
        alive_ms_.store(reactor_->now_ms(), std::memory_order_relaxed);
        tcp_->tick();
        if (udp_) udp_->tick();
    }
    tcp_->tend();
    if (draining_ && tcp_->idle() && (!udp_ || udp_->idle()))
        drained_.store(true, std::memory_order_release);
}

void Worker::arm_tick() noexcept {
    if (io_uring_sqe* s = reactor_->submit(Op::kTick)) io_uring_prep_timeout(s, &tick_ts_, 0, 0);
}

void Worker::arm_wake() noexcept {
    if (io_uring_sqe* s = reactor_->submit(Op::kWake))
        io_uring_prep_read(s, wake_fd_, &wake_buf_, sizeof wake_buf_, 0);
}

void Worker::begin_stop() noexcept {
    stopping_ = true;
    if (io_uring_sqe* s = reactor_->submit(Op::kMisc))  // the tick: its CQE then arrives at once
        io_uring_prep_timeout_remove(s, Tag{Op::kTick, 0, 0, 0}.pack(), 0);
    tcp_->stop();
    if (udp_) udp_->stop();
}

// drained: the loop ended with nothing in flight (else the ring failed, or setup did, and the
// ring's exit cancels what is left).
void Worker::teardown(bool drained) noexcept {
    if (ring_ && drained) {
        ring_->submit();
        while (reactor_->in_flight() > 0 && ring_->submit_and_wait(nullptr) >= 0)
            ring_->for_each_cqe([this](io_uring_cqe* cqe) { reactor_->complete(cqe); });
    }
    if (tcp_) {
        leaked_pages_ += tcp_->leaked_pages();
        leaked_fds_ += tcp_->open_fds();
    }
    if (udp_) {
        leaked_pages_ += udp_->leaked_pages();
        leaked_fds_ += udp_->open_fds();
    }
    udp_.reset();
    tcp_.reset();
    reactor_.reset();
    ring_.reset();
}

}  // namespace fp::net
