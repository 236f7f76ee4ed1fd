#pragma once
// TcpRelay: a worker's TCP listeners and connections. A connection has two sides (client,
// upstream); bytes received on one are queued, as the very fragments they landed in, for sending
// on the other. One send in flight per side keeps the order. Memory: the receive ring's pages
// (RecvPages, LentPages) and the budget that bounds what queues may hold (memory_budget.hpp).
//
// Connection states, and every transition (Conn::state changes only through these):
//
//   from          event                                             to
//   (free slot)   accepted, under max_connections                   kAccepted
//   kAccepted     no PROXY header, no routes: its upstream          kConnecting
//   kAccepted     on an accept_proxy listener                       kProxyHeader
//   kAccepted     on a listener with routes                         kClientHello
//   kAccepted     its receive could not be armed (send_proxy)       kClosing
//   kProxyHeader  a valid PROXY header read, the client admitted    kConnecting, or
//                 (its receive stays armed: what follows is queued   kClientHello (routes)
//                 toward the upstream)
//   kProxyHeader  invalid header, refused client, EOF, its timeout  kClosing
//   kClientHello  its server name has a route (or no name, not TLS  kConnecting
//                 or nothing sent by the timeout: the default route)
//                 (the ClientHello stays queued, sent as it came)
//   kClientHello  invalid, no route, EOF, partial at its timeout    kClosing
//   kConnecting   no fd for the upstream socket (EMFILE)            kFdWait
//   kFdWait       accepting resumes                                 kConnecting
//   kConnecting   connected                                         kRelaying
//   kConnecting   connect failed, another upstream left             kConnecting
//   kConnecting   connect failed on every upstream                  kLingering
//   kConnecting   connected, and the client's FIN came meanwhile    kRelaying, then kHalfClosed
//   kRelaying     one side's FIN received                           kHalfClosed
//   kHalfClosed   both FINs passed on, both queues sent             kClosing (FIN both ways)
//   kLingering    the client's FIN, an error, or kLingerMs          kClosing
//   any but       error, idle timeout, send stall, stop             kClosing (a reset when data
//   kClosing                                                        is queued or on an error)
//   kClosing      the last CQE of the connection                    (slot free)
//
// The table is kEdges below; set_state() is the one writer of Conn::state (it aborts on an edge
// the table lacks in debug and sanitizer builds, counts it in release: tcp illegal_transitions),
// and close_conn() the one way into kClosing, with the reason the access log and
// fragproxy_connections_closed_total{how} show.
//
// Per side, its receive (bytes from this side's peer) and its send (bytes to it):
//
//   receive  kIdle -arm-> kArmed, or kPaused (no grant), or kStarved (no receive pages)
//            kArmed -grant used up-> kPausing (cancel sent) -final CQE-> kPaused
//            kArmed -final CQE-> kIdle (re-armed at once), kStarved (-ENOBUFS), kEof (FIN)
//            kPaused -its queue sent down to half-> kIdle (re-armed); kPausing -same-> kArmed
//            kStarved -pages back, its turn in the FIFO-> kIdle (re-armed)
//   send     kIdle -data queued-> kSending -sent-> kIdle, or kSending (more queued)
//            kSending -stuck under memory pressure-> kCollapsing (cancel) -CQE-> kSending
//            kIdle -the other side's FIN, queue empty-> kShut (FIN sent)
//
// A close discards nothing silently: a connection closed with data still queued (idle timeout,
// send stall, stop, errors) is reset (SO_LINGER 0) and counted as cut; FIN is sent only when
// every byte received was passed on. What a CQE result means: classify.hpp.
//
// Owner thread only; CQEs come from the worker's loop through handle().
#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "alloc/counter.hpp"
#include "alloc/frag_cache.hpp"
#include "alloc/page_pool.hpp"
#include "net/base/access_record.hpp"
#include "net/base/fd.hpp"
#include "net/base/state_table.hpp"
#include "net/base/stats.hpp"
#include "net/engine/reactor.hpp"
#include "net/engine/recv_pages.hpp"
#include "net/engine/slot_table.hpp"
#include "net/policy/settings.hpp"
#include "net/tcp/frag_queue.hpp"
#include "net/tcp/memory_budget.hpp"

namespace fp::net {

// The relay's statistics (net/base/stats.hpp): member, type, --stats-json key, /metrics family,
// its labels, help.
#define FP_TCP_STATS(X)                                                                            \
    X(accepted, kCounter, "accepted", "fragproxy_tcp_accepted_total", "",                          \
      "TCP connections accepted (by listener: fragproxy_connections_total).")                      \
    X(refused, kCounter, "refused", "fragproxy_tcp_refused_total", "",                             \
      "TCP connections refused at accept or after their preface (by listener and reason: "         \
      "fragproxy_connections_rejected_total).")                                                    \
    X(closed, kCounter, "closed", "fragproxy_tcp_closed_total", "",                                \
      "TCP connections closed (by how: fragproxy_connections_closed_total).")                      \
    X(resets, kCounter, "resets", "fragproxy_connections_reset_total", "",                         \
      "TCP connections closed with a reset (RST), whatever the reason.")                           \
    X(cut, kCounter, "cut_with_data", "fragproxy_connections_cut_total", "",                       \
      "TCP connections closed with data still queued (always a reset).")                           \
    X(upstream_failures, kCounter, "upstream_failures", "fragproxy_tcp_upstream_failures_total",   \
      "",                                                                                          \
      "Upstream connects that failed (by upstream: fragproxy_upstream_connect_failures_total).")   \
    X(retries, kCounter, "retries", "fragproxy_upstream_retries_total", "",                        \
      "Connects tried on the next upstream after one failed.")                                     \
    X(connect_timeouts, kCounter, "connect_timeouts", "fragproxy_timeouts_total",                  \
      "kind=\"connect\"", "Connections ended by a timeout.")                                       \
    X(idle_timeouts, kCounter, "idle_timeouts", "fragproxy_timeouts_total", "kind=\"idle\"", "")   \
    X(send_stalls, kCounter, "send_stalls", "fragproxy_timeouts_total", "kind=\"send_stall\"", "") \
    X(bytes_client, kCounter, "bytes_client_to_upstream", "fragproxy_tcp_bytes_total",             \
      "direction=\"client_to_upstream\"",                                                          \
      "TCP payload bytes received, by direction (by listener: fragproxy_bytes_total).")            \
    X(bytes_upstream, kCounter, "bytes_upstream_to_client", "fragproxy_tcp_bytes_total",           \
      "direction=\"upstream_to_client\"", "")                                                      \
    X(starved, kCounter, "recv_buffer_waits", "fragproxy_recv_buffer_waits_total",                 \
      "protocol=\"tcp\"", "Receives that waited for receive buffers.")                             \
    X(pressure_pauses, kCounter, "pressure_pauses", "fragproxy_pressure_pauses_total", "",         \
      "Receives paused by the memory budget below max_inflight.")                                  \
    X(collapses, kCounter, "collapses", "fragproxy_collapses_total", "",                           \
      "Stuck queues copied into compact fragments under memory pressure.")                         \
    X(collapsed_bytes, kCounter, "collapsed_bytes", "fragproxy_collapsed_bytes_total", "",         \
      "Bytes those collapses copied.")                                                             \
    X(collapse_failures, kCounter, "collapse_failures", "fragproxy_collapse_failures_total", "",   \
      "Collapses that found no memory to copy into.")                                              \
    X(clamps, kCounter, "buffer_clamps", "fragproxy_buffer_clamps_total", "action=\"clamp\"",      \
      "Kernel socket buffers clamped behind a stuck peer, and given back once it caught up.")      \
    X(unclamps, kCounter, "buffer_unclamps", "fragproxy_buffer_clamps_total",                      \
      "action=\"unclamp\"", "")                                                                    \
    X(fd_exhausted, kCounter, "fd_exhausted", "fragproxy_fd_exhausted_total", "",                  \
      "Accepts or upstream sockets that failed for want of file descriptors (EMFILE, ENFILE).")    \
    X(accept_pauses, kCounter, "accept_pauses", "fragproxy_accept_pauses_total", "",               \
      "Times accepting paused for want of file descriptors.")                                      \
    X(direct_sides, kCounter, "direct_sides", "fragproxy_tcp_direct_sides_total", "",              \
      "Client and upstream sockets made as io_uring direct descriptors.")                          \
    X(fd_installs, kCounter, "fd_installs", "fragproxy_tcp_fd_installs_total", "",                 \
      "Plain fds installed for direct descriptors (the memory budget's syscalls).")                \
    X(sockopt_failures, kCounter, "sockopt_failures", "fragproxy_tcp_sockopt_failures_total", "",  \
      "Socket commands (setsockopt through the ring) that failed.")                                \
    X(fin_by_close, kCounter, "fin_by_close", "fragproxy_tcp_fin_by_close_total", "",              \
      "Last FINs passed on by the close, without a shutdown.")                                     \
    X(close_cancels, kCounter, "close_cancels", "fragproxy_tcp_close_cancels_total", "",           \
      "Sides with an operation in flight at their close, cancelled.")                              \
    X(zc_sends, kCounter, "zc_sends", "fragproxy_tcp_zerocopy_sends_total", "",                    \
      "Zero-copy sends (io_uring.send_zc).")                                                       \
    X(zc_copied, kCounter, "zc_copied", "fragproxy_tcp_zerocopy_copied_total", "",                 \
      "Zero-copy sends the kernel copied after all.")                                              \
    X(recv_bundles, kCounter, "recv_bundles", "fragproxy_tcp_recv_bundles_total", "",              \
      "Receive completions that filled more than one buffer (bundles).")                           \
    X(live, kGauge, "live_connections", "fragproxy_tcp_connections_live", "",                      \
      "TCP connections this worker holds (published once a second).")                              \
    X(queued_bytes, kGauge, "queued_bytes", "fragproxy_tcp_queued_bytes", "",                      \
      "Bytes queued toward slow peers (published once a second).")                                 \
    X(queue_peak, kPeak, "queue_peak_bytes", "fragproxy_tcp_queue_peak_bytes", "",                 \
      "The largest send queue seen, in bytes.")                                                    \
    X(pressure_level, kGauge, "pressure_level", "fragproxy_memory_pressure", "",                   \
      "0 below, 1 pressure, 2 above (published once a second).")                                   \
    X(pages_in_use, kGauge, "pages_in_use", "fragproxy_alloc_pages_in_use", "",                    \
      "Pages of the TCP arena in use (published once a second).")                                  \
    X(frags, kCounter, "fragments", "fragproxy_alloc_fragments_total", "arena=\"tcp\"",            \
      "Fragments received into (one per receive buffer filled).")                                  \
    X(page_drains, kCounter, "page_drains", "fragproxy_alloc_drains_total", "",                    \
      "A closing connection's queued fragments released, one call per page.")                      \
    X(pages_reused, kCounter, "pages_reused", "fragproxy_alloc_page_reuse_total",                  \
      "arena=\"tcp\",how=\"in_place\"",                                                            \
      "Receive pages charged again in place once all their fragments came back, or new from "      \
      "the pool (published once a second).")                                                       \
    X(pages_new, kCounter, "pages_new", "fragproxy_alloc_page_reuse_total",                        \
      "arena=\"tcp\",how=\"new\"", "")                                                             \
    X(illegal_transitions, kCounter, "illegal_transitions", "fragproxy_illegal_transitions_total", \
      "protocol=\"tcp\"", "State changes the state table lacks (a bug; 0 expected).")

struct TcpStats {
    FP_TCP_STATS(FP_STAT_MEMBER)
    // Connections closed, by how they ended (AccessEnd: what the access log says too):
    // --stats-json tcp.closed_by.<end>, fragproxy_connections_closed_total{how="<end>"}.
    Counter closed_by[kAccessEnds];
};

FP_STAT_TABLE(kTcpStatDefs, TcpStats, FP_TCP_STATS)

class TcpRelay {
  public:
    // Opens the listeners' sockets and the receive ring; throws std::system_error naming what
    // failed (start-up path).
    // log: where a connection's access record goes when it ends (null: no access log).
    TcpRelay(Reactor& reactor, const WorkerSettings& settings, unsigned worker_index,
             TcpStats& stats, AccessQueue* log);
    ~TcpRelay();
    TcpRelay(const TcpRelay&) = delete;
    TcpRelay& operator=(const TcpRelay&) = delete;

    void start() noexcept;  // arms the listeners' accepts
    // A reload: listeners with the same address (and share_port) keep their socket and take the
    // new settings, new ones open and accept, removed ones close (their connections go on).
    // Established connections keep the settings they were accepted with; new ones get these.
    // Returns what failed ("" when nothing did); what could be applied is.
    std::string reconfigure(const std::vector<TcpListenerSettings>& listeners) noexcept;
    void handle(const Tag& t, io_uring_cqe* cqe) noexcept;
    // After each batch of CQEs: refill() (pages back to the kernel, starved receives re-armed,
    // oldest first and as many as the pages on offer can serve), then tend() (the pressure level
    // and, when memory is tight, stuck queues).
    void refill() noexcept;
    void tend() noexcept;
    void tick() noexcept;   // idle, linger and send-stall timeouts; gauges
    void drain() noexcept;  // listeners closed: no new connections; established ones go on
    void stop() noexcept;   // no new connections; every connection closes
    bool idle() const noexcept { return conns_.live() == 0; }
    // Receives wait for buffers: the worker must come back soon even if no CQE arrives.
    bool starved() const noexcept { return starved_head_ < starved_.size(); }
    std::string describe() const;
    // At the end: pages still in use once everything is drained, and fds still open.
    std::size_t leaked_pages() noexcept;
    long open_fds() const noexcept { return open_fds_; }

  private:
    static constexpr unsigned kMaxIov = 16;               // fragments per sendmsg
    static constexpr std::uint64_t kAcceptPauseMs = 100;  // accepting paused when out of fds
    // Direct descriptors: accepts make them while this many entries are free (a listen backlog
    // and some), upstream sockets while this many.
    static constexpr unsigned kAcceptHeadroom = 4096 + 64;
    static constexpr unsigned kSocketHeadroom = 16;
    // Zero-copy sends from this size (the kernel's own figure: below ~3 KiB, pinning the pages
    // and the notification cost more than the copy).
    static constexpr std::uint32_t kZcMinBytes = 3 * 1024;

    enum class State : std::uint8_t {
        kAccepted,
        kProxyHeader,
        kClientHello,
        kConnecting,
        kFdWait,
        kRelaying,
        kHalfClosed,
        kLingering,
        kClosing
    };
    static constexpr StateTable<State, 9> kEdges{
        {State::kAccepted, State::kConnecting},     {State::kAccepted, State::kProxyHeader},
        {State::kAccepted, State::kClientHello},    {State::kAccepted, State::kClosing},
        {State::kProxyHeader, State::kClientHello}, {State::kProxyHeader, State::kConnecting},
        {State::kProxyHeader, State::kClosing},     {State::kClientHello, State::kConnecting},
        {State::kClientHello, State::kClosing},     {State::kConnecting, State::kConnecting},
        {State::kConnecting, State::kFdWait},       {State::kConnecting, State::kRelaying},
        {State::kConnecting, State::kLingering},    {State::kConnecting, State::kClosing},
        {State::kFdWait, State::kConnecting},       {State::kFdWait, State::kClosing},
        {State::kRelaying, State::kHalfClosed},     {State::kRelaying, State::kClosing},
        {State::kHalfClosed, State::kClosing},      {State::kLingering, State::kClosing}};
    enum class Recv : std::uint8_t { kIdle, kArmed, kPausing, kPaused, kStarved, kEof };
    enum class Send : std::uint8_t { kIdle, kSending, kCollapsing, kShut };

    struct Side {
        int fd = -1;              // the socket: a plain fd, or an index in the ring's file table
        bool direct = false;      // ... which (IOSQE_FIXED_FILE on each of its SQEs)
        bool installing = false;  // a plain fd for the direct descriptor is on its way (kInstall)
        int sys = -1;             // that plain fd, once installed (tcp_pressure's syscalls)
        int zc_res = 0;  // a zero-copy send's result, kept until its notification (on_send_cqe)
        // The fd syscalls take: its own, or the one installed for its direct descriptor (-1).
        int plain() const noexcept { return direct ? sys : fd; }
        Recv recv = Recv::kIdle;
        Send send = Send::kIdle;
        std::uint8_t clamped = 0;   // its peer is behind: 1 send buffer and window, 2 all clamped
        std::uint8_t probed = 0;    // this wait, its peer's window was seen open (no clamp 2)
        std::uint32_t granted = 0;  // bytes the armed receive may still take (its grant)
        // The kernel's values before the clamp, restored once the peer has caught up.
        int sndbuf = 0, window = 0, rcvbuf = 0;
        std::uint64_t progress_ms = 0;  // the queue last moved toward this peer (or began)
        FragQueue out;                  // received on the other side, to be sent here
        msghdr msg{};
        iovec iov[kMaxIov];
    };
    struct Conn : SlotHeader {
        State state = State::kAccepted;                  // set_state() alone writes it
        std::shared_ptr<const TcpListenerSettings> cfg;  // as when accepted (reloads change it)
        __kernel_timespec connect_ts{};                  // the connect's link timeout
        std::uint16_t listener = 0;
        std::uint16_t upstream = 0;
        std::uint16_t attempts = 0;
        std::int16_t route = -1;           // its route (routes); -1: the listener's whole list
        std::int32_t counted = -1;         // the upstream whose active gauge counts it
        bool source_counted = false;       // in its listener's SourceTable (release at the end)
        AccessEnd end = AccessEnd::kNone;  // how it ended, for the access log
        std::uint64_t last_active = 0;
        std::uint64_t started_ms = 0;
        std::uint64_t bytes[2] = {};  // received from the client (0) and the upstream (1)
        AccessAddr client;            // with a policy, source_hash, the access log or send_proxy
        AccessAddr local;             // the address the client connected to (send_proxy only)
        std::byte* tlvs = nullptr;    // accepted TLVs to pass on (send_proxy), a preface fragment
        std::uint16_t tlv_len = 0;
        Side side[2];
    };
    // A listen socket and what it accepts with. Slots are never reused (a CQE of a removed
    // listener must not find a new one) and never move (a deque): the kernel holds no pointer
    // into them, but a reload must not disturb the references of the batch it runs in.
    struct Listener {
        std::shared_ptr<const TcpListenerSettings> cfg;
        Fd fd;                         // -1 once removed by a reload, or drained
        bool paused = false;           // out of fds, waiting
        bool armed_direct = false;     // its multishot accept makes direct descriptors
        Balancer balancer;             // this worker's state of the listener's balance
        std::vector<Balancer> routes;  // ... and of each route's (routes)
    };
    struct Waiter {  // a connection waiting in a FIFO (starved receive, fd wait)
        std::uint32_t slot, gen;
        unsigned side;
    };

    // Accept (tcp_accept.cpp).
    void reserve(const std::vector<TcpListenerSettings>& listeners);
    void add_listener(const TcpListenerSettings& cfg);  // throws std::system_error
    void close_listener(Listener& l) noexcept;
    void arm_accept(unsigned listener) noexcept;
    void on_accept(unsigned listener, io_uring_cqe* cqe) noexcept;
    void out_of_fds(unsigned listener, int err) noexcept;
    void on_accept_resume(unsigned listener) noexcept;
    void open_conn(unsigned listener, int client_fd, bool direct) noexcept;
    // Whether this listener's accepts can make direct descriptors: not when the client's
    // address is needed at once (getpeername takes a plain fd; the multishot accept gives none).
    bool accepts_direct(const TcpListenerSettings& cfg) const noexcept;
    void rearm_accepts() noexcept;
    void count_upstream(Conn& c, std::int32_t upstream) noexcept;

    // Lifecycle (tcp_relay.cpp).
    void on_conn_cqe(Conn& c, const Tag& t, io_uring_cqe* cqe) noexcept;
    void connect_upstream(std::uint32_t slot) noexcept;
    void on_socket(Conn& c, std::uint32_t slot, int res) noexcept;
    void wait_for_fd(Conn& c, std::uint32_t slot, int err) noexcept;
    void on_sockopt(Conn& c, int res) noexcept;
    void start_connect(Conn& c, std::uint32_t slot, int fd) noexcept;
    void on_connect(Conn& c, std::uint32_t slot, int res) noexcept;
    void linger_close(Conn& c, std::uint32_t slot) noexcept;
    void shutdown_side(Conn& c, std::uint32_t slot, unsigned s) noexcept;
    void check_done(Conn& c, std::uint32_t slot) noexcept;
    void set_state(Conn& c, State to) noexcept {
        net::set_state(c.state, to, kEdges, stats_.illegal_transitions);
    }
    // The one way a connection closes (to kClosing): cancels what it has in flight;
    // maybe_finish() frees it once the last CQE is in. why: the reason this close has of its own
    // (a timeout, a refusal, the drain), or kNone: it ends as it went (its FINs, a failed
    // connect, an error). reset: RST instead of FIN (forced when data would be lost). The reason
    // it ends with (Conn::end) is what the access log and closed_total{how} show.
    void close_conn(Conn& c, std::uint32_t slot, AccessEnd why, bool reset) noexcept;
    void log_access(const Conn& c) noexcept;
    void reject(Listener& l, const AccessAddr& client, int client_fd, bool direct,
                Counter& reason) noexcept;
    // The listener's source policy for this client: null (admitted; counted in the source table
    // if it limits) or the counter of the reason it is refused.
    Counter* refusal(const TcpListenerSettings& cfg, const AccessAddr& client) noexcept;
    void reset_balance(Listener& l) noexcept;
    // The balance's pick among the upstreams of `route` (-1: all of the listener's), as an
    // index in the listener's list; Balancer::kNone when every one of them is out.
    std::uint16_t pick_upstream(Listener& l, const TcpListenerSettings& cfg, int route,
                                const AccessAddr& client) noexcept;

    // What comes before the upstream is chosen (tcp_preface.cpp): the PROXY header, the
    // ClientHello, the route.
    void read_proxy_header(Conn& c, std::uint32_t slot) noexcept;
    bool keep_tlvs(Conn& c, const std::uint8_t* header, const ProxyHeader& h) noexcept;
    void admit_proxied(Conn& c, std::uint32_t slot) noexcept;
    void read_client_hello(Conn& c, std::uint32_t slot) noexcept;
    void hello_timed_out(Conn& c, std::uint32_t slot) noexcept;
    void route_to(Conn& c, std::uint32_t slot, int route) noexcept;
    void refuse(Conn& c, std::uint32_t slot, Counter& reason, bool reset = false) noexcept;
    // Not connected to its upstream yet: nothing is sent, no FIN passed on.
    static bool before_upstream(const Conn& c) noexcept {
        return c.state == State::kAccepted || c.state == State::kProxyHeader ||
               c.state == State::kClientHello || c.state == State::kConnecting ||
               c.state == State::kFdWait;
    }
    void upstream_keepalive(Conn& c, std::uint32_t slot, int fd) noexcept;
    bool queue_proxy_header(Conn& c) noexcept;
    void maybe_finish(Conn& c, std::uint32_t slot) noexcept;
    void drain_queue(FragQueue& q) noexcept;
    void close_fd(int fd, bool direct = false) noexcept;
    void close_side(Side& side) noexcept;  // its socket (and installed fd), if any
    // The side's socket on an SQE: a direct descriptor is flagged as one.
    static void use(io_uring_sqe* q, const Side& side) noexcept {
        if (side.direct) q->flags |= IOSQE_FIXED_FILE;
    }
    // A plain fd for side s's socket, for syscalls (the memory budget's getsockopt, ioctl): its
    // own, or the one installed for its direct descriptor; -1 while that is on its way (asked
    // for here, once).
    int sys_fd(Conn& c, std::uint32_t slot, unsigned s) noexcept;
    void on_install(Conn& c, std::uint32_t slot, unsigned s, int res) noexcept;

    // Data (tcp_data.cpp).
    void arm_recv(Conn& c, std::uint32_t slot, unsigned s) noexcept;
    void on_recv(Conn& c, std::uint32_t slot, unsigned s, io_uring_cqe* cqe) noexcept;
    void on_data(Conn& c, std::uint32_t slot, unsigned s, io_uring_cqe* cqe) noexcept;
    void pause_recv(Conn& c, std::uint32_t slot, unsigned s) noexcept;
    void starve(Conn& c, std::uint32_t slot, unsigned s) noexcept;
    void rearm_starved() noexcept;
    void kick_send(Conn& c, std::uint32_t slot, unsigned s) noexcept;
    void on_send_cqe(Conn& c, std::uint32_t slot, unsigned s, const io_uring_cqe* cqe) noexcept;
    void on_send(Conn& c, std::uint32_t slot, unsigned s, int res) noexcept;
    void queue_fragment(Side& side, std::byte* frag, std::uint32_t len, FragNode* n,
                        bool front = false) noexcept;
    template <class Each>
    void take_each(const io_uring_cqe* cqe, Each&& each) noexcept;
    void drop_recv(const io_uring_cqe* cqe) noexcept;  // frees what a receive filled

    // Memory budget (tcp_pressure.cpp).
    std::uint32_t queue_limit(const Conn& c) const noexcept;
    // Memory is tight: under pressure, or a quarter of the normal zone queued or granted.
    bool tight() const noexcept {
        return level_ != Pressure::kBelow || (queued_ + granted_) * 4 >= pool_->normal_bytes();
    }
    void take_grant(Side& side, std::uint32_t n) noexcept;
    void paused_by_budget(Conn& c, std::uint32_t slot, unsigned s) noexcept;
    void clamp_behind(Conn& c, std::uint32_t slot, unsigned s) noexcept;
    void tend_stuck() noexcept;
    void clamp_buffers(Conn& c, std::uint32_t slot, unsigned s, bool stuck) noexcept;
    void unclamp_buffers(Conn& c, unsigned s) noexcept;
    static bool peer_backlogged(int fd) noexcept;
    void collapse(Side& side) noexcept;

    Reactor& reactor_;
    unsigned index_;
    TcpStats& stats_;
    AccessQueue* log_;

    std::unique_ptr<PagePool> pool_;
    std::unique_ptr<RecvPages> recv_;
    // Collapsed queues' fragments: may take the pool's last pages (Depth::kMemalloc), as a
    // collapse gives back more than it takes.
    std::unique_ptr<FragCache> compact_;
    std::unique_ptr<FragCache> preface_;  // PROXY headers sent, and the TLVs they pass on
    std::unique_ptr<NodePool> nodes_;
    SlotTable<Conn> conns_;
    std::deque<Listener> listeners_;
    __kernel_timespec accept_pause_ts_;
    std::vector<Waiter> starved_;  // receives waiting for pages, oldest first, from starved_head_
    std::size_t starved_head_ = 0;
    std::vector<Waiter> fd_waiters_;  // connections in kFdWait
    std::uint32_t queuing_ = 0;     // send queues holding data (the memory budget's share divisor)
    std::uint64_t queued_ = 0;      // bytes they hold together
    std::uint64_t granted_ = 0;     // bytes armed receives may still take (MemoryBudget::grant)
    std::uint32_t queue_peak_ = 0;  // TcpStats::queue_peak, kept here for the comparison
    Pressure level_ = Pressure::kBelow;
    std::uint64_t last_stuck_scan_ms_ = 0;
    std::uint64_t collapse_retry_ms_ = 0;  // a collapse found no memory: none before this
    std::uint64_t fd_logged_ms_ = 0;       // out-of-fd log lines: one per kFdLogMs
    bool capped_recv_ = true;    // the kernel takes multishot receive limits (off at -EINVAL)
    bool sockopt_cmd_ = true;    // setsockopt as a socket command; off after the kernel refused one
    bool direct_ = false;        // sockets made into the ring's file table (direct descriptors)
    unsigned direct_files_ = 0;  // the table's entries
    unsigned direct_used_ = 0;   // ... in use
    bool send_zc_ = false;       // sends of kZcMinBytes or more are zero-copy
    bool bundles_ = false;       // receives fill several ring buffers per completion
    bool started_ = false;
    bool stopping_ = false;
    long open_fds_ = 0;
};

}  // namespace fp::net
