#pragma once
// Worker: one thread, one io_uring, one arena (PagePool) and the receive ring fed from it. Shared
// nothing: a worker owns its listen sockets (SO_REUSEPORT), its connections and all their memory
// for their whole life. The only state other threads touch is the per-listener connection count
// (one atomic op per accept and close) and the worker's statistics (relaxed reads).
//
// Loop: submit, wait for at least one CQE, handle every CQE that is ready as one batch, advance
// the CQ once, then offer freed pages back to the kernel and re-arm receives that ran out of
// buffers. Errors from CQEs are values handled where they arise (see tcp_relay.cpp).
#include <sys/uio.h>

#include <atomic>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "alloc/counter.hpp"
#include "alloc/page_pool.hpp"
#include "net/fixed_buffers.hpp"
#include "net/frag_queue.hpp"
#include "net/recv_pages.hpp"
#include "net/ring.hpp"
#include "net/settings.hpp"
#include "net/udp_relay.hpp"
#include "net/user_data.hpp"

namespace fp::net {

struct WorkerStats {
    Counter accepted, refused, closed, resets, upstream_failures, bytes_client, bytes_upstream;
    Counter idle_timeouts, starved;
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
        bool paused = false;    // receiving here stopped: the other side's queue is full
        bool starved = false;   // the receive ended for want of buffers
        bool read_eof = false;  // the peer sent FIN
        bool shut_wr = false;   // we sent FIN
    };
    struct Conn {
        std::uint32_t gen = 0;
        bool live = false;
        bool closing = false;
        bool connected = false;
        bool lingering = false;  // closing cleanly: FIN sent, reading the client's rest to EOF
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
    void arm_tick() noexcept;
    void on_tick() noexcept;
    void arm_wake() noexcept;
    io_uring_sqe* sqe(Op op, std::uint32_t slot = 0, unsigned side = 0) noexcept;

    // TCP relay (tcp_relay.cpp).
    void open_conn(unsigned listener, int client_fd) noexcept;
    void connect_upstream(std::uint32_t slot) noexcept;
    void on_socket(Conn& c, std::uint32_t slot, int res) noexcept;
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
    std::unique_ptr<NodePool> nodes_;
    std::unique_ptr<UdpRelay> udp_;
    std::vector<int> listen_fds_;
    std::vector<Conn> conns_;
    std::vector<std::uint32_t> free_slots_;
    std::vector<std::uint32_t> starved_;
    std::uint64_t now_ms_ = 0;
    unsigned misc_pending_ = 0;  // accept, tick, wake and close SQEs in flight
    std::uint32_t live_conns_ = 0;
    std::vector<std::uint16_t> rr_;              // round-robin position per listener
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
