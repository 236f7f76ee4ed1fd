#pragma once
// Worker: one thread, one io_uring, the reactor. Shared nothing: a worker owns its listen sockets
// (SO_REUSEPORT), its connections and sessions and all their memory for their whole life. The
// only state other threads touch is the per-listener connection count (one atomic op per accept
// and close) and the statistics (relaxed reads).
//
// Loop: submit, wait for at least one CQE, hand every CQE that is ready to its owner by op (the
// TCP relay, the UDP relay, or the worker's own tick and wake), as one batch, advance the CQ once,
// then the after-batch work: receive pages back to the kernel, starved receives re-armed, the
// once-a-second timeouts (after the batch, so a connection with a completion in it is never
// taken for idle), and the memory-pressure level. Stop: the relays close everything, and the
// worker runs until nothing is in flight.
#include <atomic>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "net/base/stats.hpp"
#include "net/engine/reactor.hpp"
#include "net/engine/ring.hpp"
#include "net/policy/settings.hpp"
#include "net/tcp/tcp_relay.hpp"
#include "net/udp/udp_relay.hpp"

namespace fp::net {

// The ring's work, for the cost per byte (net/base/stats.hpp).
#define FP_RING_STATS(X)                                                                          \
    X(sqes, kCounter, "sqes", "fragproxy_ring_submits_total", "",                                 \
      "SQEs submitted to the worker's ring.")                                                     \
    X(cqes, kCounter, "cqes", "fragproxy_ring_cqes_total", "", "CQEs handled.")                   \
    X(enters, kCounter, "enters", "fragproxy_ring_enters_total", "",                              \
      "io_uring_enter calls (submit and wait: one per pass, two for a batch wait with something " \
      "to submit).")                                                                              \
    X(batch_waits, kCounter, "batch_waits", "fragproxy_ring_batch_waits_total", "",               \
      "Waits of a worker busy with UDP for a batch of CQEs, bounded by io_uring.batch_wait_us.")

struct RingStats {
    FP_RING_STATS(FP_STAT_MEMBER)
};

FP_STAT_TABLE(kRingStatDefs, RingStats, FP_RING_STATS)

class Worker {
  public:
    // settings: kept for the worker's life (memory, rings); reload() replaces the listeners'.
    // log: this worker's access-log queue (null: no access log); outlives the worker.
    Worker(std::shared_ptr<const WorkerSettings> settings, unsigned index,
           AccessQueue* log = nullptr);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    // Starts the thread; returns once the worker's ring, memory and sockets are set up, or throws
    // what setup threw (std::system_error naming what failed).
    void start();
    // Graceful drain: stops accepting (listeners closed, new UDP clients refused) and lets what
    // is established finish; drained() turns true once nothing is left. Returns at once.
    void drain();
    bool drained() const noexcept { return drained_.load(std::memory_order_acquire); }
    // A reload: the worker takes these listeners' settings (TcpRelay::reconfigure,
    // UdpRelay::reconfigure) between two batches; the future says what failed ("" if nothing).
    // The rest of the settings (memory, receive path) stay as at start. One at a time.
    std::future<std::string> reload(std::shared_ptr<const WorkerSettings> next);
    // Stops accepting, closes every connection (in-flight sends are cut), waits for the thread.
    void stop();
    const TcpStats& tcp_stats() const noexcept { return tcp_stats_; }
    const UdpStats& udp_stats() const noexcept { return udp_stats_; }
    const RingStats& ring_stats() const noexcept { return ring_stats_; }
    // Liveness, for /healthz: when the worker last ran its once-a-second tick (monotonic_ms()),
    // and whether its thread has ended (stopped, or its ring failed).
    std::uint64_t alive_ms() const noexcept { return alive_ms_.load(std::memory_order_relaxed); }
    bool ended() const noexcept { return ended_.load(std::memory_order_acquire); }
    // After stop(): what the worker still held when it ended. Both 0 unless something leaked.
    std::size_t leaked_pages() const noexcept { return leaked_pages_; }
    long leaked_fds() const noexcept { return leaked_fds_; }

  private:
    void run(std::promise<void>* ready) noexcept;
    void setup();
    bool loop() noexcept;
    void handle(io_uring_cqe* cqe) noexcept;
    void after_batch() noexcept;
    void arm_tick() noexcept;
    void arm_wake() noexcept;
    void on_wake() noexcept;
    void apply_reload() noexcept;
    void command(unsigned c) noexcept;
    void begin_stop() noexcept;
    void teardown(bool drained) noexcept;
    bool done() const noexcept {
        return stopping_ && reactor_->in_flight() == 0 && tcp_->idle() && (!udp_ || udp_->idle());
    }

    const std::shared_ptr<const WorkerSettings> settings_;  // as at start
    unsigned index_;
    AccessQueue* log_;
    std::thread thread_;
    enum Command : unsigned { kDrain = 1, kStop = 2, kReload = 4 };
    int wake_fd_ = -1;
    std::uint64_t wake_buf_ = 0;
    std::atomic<unsigned> commands_{0};  // what the wake asks for (bits of Command)
    std::mutex reload_mu_;               // the hand-over of a reload (control plane only)
    std::shared_ptr<const WorkerSettings> reload_next_;
    std::promise<std::string> reload_done_;
    std::shared_ptr<const WorkerSettings> current_;  // the listeners' settings (worker thread)
    std::atomic<bool> drained_{false};
    std::atomic<std::uint64_t> alive_ms_{0};
    std::atomic<bool> ended_{false};
    __kernel_timespec tick_ts_{1, 0};

    // Owned by the worker thread from setup() to teardown().
    std::unique_ptr<Ring> ring_;
    std::unique_ptr<Reactor> reactor_;
    std::unique_ptr<TcpRelay> tcp_;
    std::unique_ptr<UdpRelay> udp_;
    bool tick_due_ = false;
    unsigned udp_cqes_ = 0;  // UDP CQEs handled in this pass (batch waits)
    bool draining_ = false;
    bool stopping_ = false;

    TcpStats tcp_stats_;
    UdpStats udp_stats_;
    RingStats ring_stats_;
    std::size_t leaked_pages_ = 0;
    long leaked_fds_ = 0;
};

}  // namespace fp::net
