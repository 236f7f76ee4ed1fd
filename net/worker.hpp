#pragma once
// Worker: one thread, one io_uring, one arena (PagePool) and the receive ring fed from it. Shared
// nothing: a worker owns its listen sockets (SO_REUSEPORT), its connections and all their memory
// for their whole life. The only state other threads touch is the per-listener connection count
// (one atomic op per accept and close) and the worker's statistics (relaxed reads).
//
// Loop: submit, wait for at least one CQE, handle every CQE that is ready as one batch, advance
// the CQ once, then offer freed pages back to the kernel and re-arm receives that ran out of
// buffers. The once-a-second timer's scan (idle, send-stall) runs after the batch, so a connection
// with a completion in the batch is never taken for idle (the process may have been paused).
// After each batch the worker derives its memory-pressure level from the pool (memory_budget.hpp)
// and, under pressure, collapses stuck queues. Errors from CQEs are values handled where they
// arise (see tcp_relay.cpp).
#include <sys/uio.h>

#include <atomic>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "alloc/counter.hpp"
#include "alloc/frag_cache.hpp"
#include "alloc/page_pool.hpp"
#include "net/fixed_buffers.hpp"
#include "net/frag_queue.hpp"
#include "net/memory_budget.hpp"
#include "net/recv_pages.hpp"
#include "net/ring.hpp"
#include "net/settings.hpp"
#include "net/udp_relay.hpp"
#include "net/user_data.hpp"

namespace fp::net {

struct WorkerStats {
    Counter accepted, refused, closed, resets, upstream_failures, bytes_client, bytes_upstream;
    Counter idle_timeouts, starved;
    Counter cut;              // connections closed with queued data discarded (always a reset)
    Counter send_stalls;      // queues that made no progress for timeouts.send_stall: reset
    Counter pressure_pauses;  // receives paused by the memory budget below max_inflight
    Counter collapses, collapsed_bytes;  // stuck queues copied into compact fragments, and bytes
    Counter fd_exhausted;   // accepts or upstream sockets that failed with EMFILE/ENFILE
    Counter accept_pauses;  // times accepting paused for want of file descriptors
    // Gauges, published by the worker once a second (the tick's scan) for other threads.
    Counter pages_in_use, queued_bytes, pressure_level, live;
};

// Per listener, shared by every worker: enforces max_connections across them.
struct ListenerShared {
    std::atomic<std::uint32_t> connections{0};
};

class Worker {
  public:
    Worker(const WorkerSettings& settings, std::vector<ListenerShared>& shared, unsigned index);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    // Starts the thread; returns once the worker's ring, memory and sockets are set up, or throws
    // what setup threw (std::system_error naming what failed).
    void start();
    // Stops accepting, closes every connection (in-flight sends are cut), waits for the thread.
    void stop();
    const WorkerStats& stats() const noexcept { return stats_; }
    const UdpStats& udp_stats() const noexcept { return udp_stats_; }
    // After stop(): what the worker still held when it ended. Both 0 unless something leaked.
    std::size_t leaked_pages() const noexcept { return leaked_pages_; }
    long leaked_fds() const noexcept { return leaked_fds_; }

  private:
    static constexpr unsigned kMaxIov = 16;
    struct Side {
        int fd = -1;
        FragQueue out;  // received on the other side, to be sent here
        iovec iov[kMaxIov];
        msghdr msg{};
        bool sending = false;
        bool recv_armed = false;
        bool paused = false;        // receiving here stopped: the other side's queue is full
        bool starved = false;       // the receive ended for want of buffers
        bool read_eof = false;      // the peer sent FIN
        bool shut_wr = false;       // we sent FIN
        bool collapse = false;      // the send was cancelled so the queue can be collapsed
        std::uint32_t granted = 0;  // bytes the armed receive may still take (its grant)
        std::uint8_t clamped = 0;   // its peer is behind: 1 send buffer and window, 2 all clamped
        std::uint64_t progress_ms = 0;  // the queue last moved toward this peer (or began)
    };
    struct Conn {
        std::uint32_t gen = 0;
        bool live = false;
        bool closing = false;
        bool connected = false;
        bool lingering = false;  // closing cleanly: FIN sent, reading the client's rest to EOF
        bool fd_wait = false;    // no fd for its upstream socket: retried when accepting resumes
        std::uint16_t listener = 0;
        std::uint16_t upstream = 0;
        std::uint16_t attempts = 0;
        std::uint32_t pending = 0;  // SQEs whose last CQE has not arrived
        std::uint64_t last_active = 0;
        Side side[2];
    };

    void run(std::promise<void>* ready) noexcept;
    void setup();
    void loop() noexcept;
    void handle(io_uring_cqe* cqe) noexcept;
    void begin_stop() noexcept;
    void teardown() noexcept;

    // Accept side (worker.cpp).
    void arm_accept(unsigned listener) noexcept;
    void on_accept(unsigned listener, io_uring_cqe* cqe) noexcept;
    void out_of_fds(unsigned listener, int err) noexcept;
    void on_accept_resume(unsigned listener) noexcept;
    void arm_tick() noexcept;
    void on_tick() noexcept;
    void scan_timeouts() noexcept;
    void after_batch() noexcept;
    void arm_wake() noexcept;
    io_uring_sqe* sqe(Op op, std::uint32_t slot = 0, unsigned side = 0) noexcept;

    // TCP relay (tcp_relay.cpp).
    void open_conn(unsigned listener, int client_fd) noexcept;
    void connect_upstream(std::uint32_t slot) noexcept;
    void on_socket(Conn& c, std::uint32_t slot, int res) noexcept;
    void wait_for_fd(Conn& c, std::uint32_t slot, int err) noexcept;
    void on_sockopt(Conn& c, std::uint32_t slot, int res) noexcept;
    void start_connect(Conn& c, std::uint32_t slot, int fd) noexcept;
    void on_connect(Conn& c, std::uint32_t slot, int res) noexcept;
    void arm_recv(Conn& c, std::uint32_t slot, unsigned s) noexcept;
    void on_recv(Conn& c, std::uint32_t slot, unsigned s, io_uring_cqe* cqe) noexcept;
    void kick_send(Conn& c, std::uint32_t slot, unsigned s) noexcept;
    void on_send(Conn& c, std::uint32_t slot, unsigned s, int res) noexcept;
    void shutdown_side(Conn& c, std::uint32_t slot, unsigned s) noexcept;
    void pause_recv(Conn& c, std::uint32_t slot, unsigned s) noexcept;
    void close_conn(Conn& c, std::uint32_t slot, bool reset) noexcept;
    void linger_close(Conn& c, std::uint32_t slot) noexcept;
    void maybe_finish(Conn& c, std::uint32_t slot) noexcept;
    void check_done(Conn& c, std::uint32_t slot) noexcept;
    void drain_queue(FragQueue& q) noexcept;
    void queue_fragment(Side& side, std::byte* frag, std::uint32_t len, FragNode* n) noexcept;
    void update_pressure() noexcept;
    std::uint32_t queue_limit(const Conn& c) const noexcept;
    // Memory is tight: under pressure, or a quarter of the normal zone queued or granted.
    bool tight() const noexcept {
        return level_ != Pressure::kBelow || (queued_ + granted_) * 4 >= pool_->normal_bytes();
    }
    void take_grant(Side& side, std::uint32_t n) noexcept;
    void tend_stuck() noexcept;
    void clamp_buffers(Conn& c, unsigned s, bool stuck) noexcept;
    static bool peer_backlogged(int fd) noexcept;
    void collapse(Side& side) noexcept;
    void close_fd(int fd) noexcept;
    void rearm_starved() noexcept;
    Conn* conn(const Tag& t) noexcept;

    const WorkerSettings& settings_;
    std::vector<ListenerShared>& shared_;
    unsigned index_;
    std::thread thread_;
    int wake_fd_ = -1;
    std::uint64_t wake_buf_ = 0;
    __kernel_timespec tick_ts_{1, 0};

    // Owned by the worker thread from setup() to teardown().
    std::unique_ptr<PagePool> pool_;
    std::unique_ptr<Ring> ring_;
    std::unique_ptr<FixedBuffers> fixed_;
    std::unique_ptr<RecvPages> recv_;
    std::unique_ptr<FragCache> compact_;  // collapsed queues' fragments
    std::unique_ptr<NodePool> nodes_;
    std::unique_ptr<UdpRelay> udp_;
    std::vector<int> listen_fds_;
    std::vector<Conn> conns_;
    std::vector<std::uint32_t> free_slots_;
    std::vector<std::uint32_t> starved_;
    std::vector<std::uint32_t> fd_waiters_;  // connections waiting for an fd (Conn::fd_wait)
    std::uint64_t now_ms_ = 0;
    unsigned misc_pending_ = 0;  // accept, tick, wake and close SQEs in flight
    std::uint32_t live_conns_ = 0;
    std::uint32_t queuing_ = 0;  // send queues holding data (the memory budget's share divisor)
    std::uint64_t queued_ = 0;   // bytes they hold together
    std::uint64_t granted_ = 0;  // bytes armed receives may still take (MemoryBudget::grant)
    bool capped_recv_ = true;    // the kernel takes multishot receive limits (off at -EINVAL)
    Pressure level_ = Pressure::kBelow;
    std::uint64_t last_stuck_scan_ms_ = 0;
    std::uint64_t resumed_ms_ = 0;  // end of the last gap in which the worker was not running
    // Milliseconds since t, not counting time the worker was not running (see loop()).
    std::uint64_t since(std::uint64_t t) const noexcept {
        return now_ms_ - (t > resumed_ms_ ? t : resumed_ms_);
    }
    bool tick_due_ = false;
    std::vector<bool> accept_paused_;                  // per listener: out of fds, waiting
    std::uint64_t fd_logged_ms_ = 0;                   // out-of-fd log lines: one per 10 s
    __kernel_timespec accept_pause_ts_{0, 100000000};  // 100 ms
    std::vector<std::uint16_t> rr_;                    // round-robin position per listener
    std::vector<__kernel_timespec> connect_ts_;  // per listener, for the connect's link timeout
    bool stopping_ = false;
    long open_fds_ = 0;
    bool sockopt_cmd_ = true;  // setsockopt as a socket command; off after the kernel refused one

    WorkerStats stats_;
    UdpStats udp_stats_;
    std::size_t leaked_pages_ = 0;
    long leaked_fds_ = 0;
};

}  // namespace fp::net
