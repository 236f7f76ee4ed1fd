#pragma once
// UdpRelay: a worker's UDP listeners and their sessions. A session is one client address on one
// listener, with its own connected upstream socket, so the upstream's replies find their client;
// replies go back from the listener's socket with sendmsg, only ever to a client that sent first
// (no reflection, no amplification). Only the client's datagrams keep a session alive: a
// session_timeout after its last one it ends, however much the upstream still sends (a spoofed
// source cannot keep a stream flowing at its victim), and max_responses bounds the upstream's
// datagrams per client datagram (nginx's proxy_responses; past it they are dropped and counted).
// max_sessions (per listener and worker) and a per-source cap bound the sessions (new sessions
// past a cap are dropped and counted; existing ones go on).
//
// Receive: multishot recvmsg / recv with buffer select from the relay's own provided-buffer ring.
// A datagram must never be split or merged, so its buffers are not consumed incrementally: each
// buffer is a whole 128 KiB page, enough for 65507 bytes plus the recvmsg header and the source
// address; the datagram is a fragment of that page, sent as it is and freed when the send
// completes, which returns the page to the ring.
//
// Send: datagrams of one session and direction received in one CQE batch go out in one sendmsg
// with UDP GSO (UDP_SEGMENT): one iovec per datagram, all of one size but the last, which may be
// shorter; the kernel cuts them apart again, so the peer sees the same datagrams, in order, each
// unchanged. One skb and route lookup per batch instead of per datagram. A GSO send the path
// refuses (EINVAL, EMSGSIZE: a segment larger than the route's MTU; EIO: a device without
// checksum offload) is sent again datagram by datagram and that session direction sends without
// GSO from then on. The batching rule is GsoBatch (gso_batch.hpp).
//
// Owner thread only; CQEs come from the worker's loop through handle().
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "alloc/counter.hpp"
#include "alloc/page_pool.hpp"
#include "net/base/access_record.hpp"
#include "net/base/fd.hpp"
#include "net/base/state_table.hpp"
#include "net/base/stats.hpp"
#include "net/engine/reactor.hpp"
#include "net/engine/recv_pages.hpp"
#include "net/engine/slot_table.hpp"
#include "net/engine/user_data.hpp"
#include "net/policy/settings.hpp"
#include "net/udp/gso_batch.hpp"

namespace fp::net {

// The relay's statistics (net/base/stats.hpp): member, type, --stats-json key, /metrics family,
// its labels, help.
#define FP_UDP_STATS(X)                                                                            \
    X(datagrams_in, kCounter, "datagrams_in", "fragproxy_udp_worker_datagrams_total",              \
      "direction=\"in\"",                                                                          \
      "UDP datagrams received from clients (in) and sent to them (out), by worker (by "            \
      "listener: fragproxy_udp_datagrams_total).")                                                 \
    X(datagrams_out, kCounter, "datagrams_out", "fragproxy_udp_worker_datagrams_total",            \
      "direction=\"out\"", "")                                                                     \
    X(sessions, kCounter, "sessions", "fragproxy_udp_worker_sessions_total", "",                   \
      "UDP sessions opened, by worker (by listener: fragproxy_udp_sessions_total).")               \
    X(sessions_expired, kCounter, "sessions_expired", "fragproxy_udp_sessions_expired_total", "",  \
      "UDP sessions ended by their session_timeout.")                                              \
    X(sessions_refused, kCounter, "sessions_refused", "fragproxy_udp_dropped_total",               \
      "reason=\"session_refused\"", "UDP datagrams or sessions dropped.")                          \
    X(dropped_no_buffer, kCounter, "dropped_no_buffer", "fragproxy_udp_dropped_total",             \
      "reason=\"no_buffer\"", "")                                                                  \
    X(dropped_responses, kCounter, "dropped_responses", "fragproxy_udp_dropped_total",             \
      "reason=\"max_responses\"", "")                                                              \
    X(upstream_errors, kCounter, "upstream_errors", "fragproxy_udp_dropped_total",                 \
      "reason=\"upstream_error\"", "")                                                             \
    X(denied, kCounter, "denied", "fragproxy_udp_dropped_total", "reason=\"denied\"", "")          \
    X(dropped_no_upstream, kCounter, "dropped_no_upstream", "fragproxy_udp_dropped_total",         \
      "reason=\"no_upstream\"", "")                                                                \
    X(sends, kCounter, "sends", "fragproxy_udp_sends_total", "",                                   \
      "UDP sendmsg calls (one per batch of datagrams).")                                           \
    X(gso_refused, kCounter, "gso_refused", "fragproxy_udp_gso_refused_total", "",                 \
      "UDP GSO batches the path refused (sent again one by one).")                                 \
    X(buffer_waits, kCounter, "buffer_waits", "fragproxy_recv_buffer_waits_total",                 \
      "protocol=\"udp\"", "")                                                                      \
    X(live, kGauge, "live_sessions", "fragproxy_udp_sessions_active", "",                          \
      "UDP sessions established (published once a second).")                                       \
    X(frags, kCounter, "fragments", "fragproxy_alloc_fragments_total", "arena=\"udp\"", "")        \
    X(pages_reused, kCounter, "pages_reused", "fragproxy_alloc_page_reuse_total",                  \
      "arena=\"udp\",how=\"in_place\"", "")                                                        \
    X(pages_new, kCounter, "pages_new", "fragproxy_alloc_page_reuse_total",                        \
      "arena=\"udp\",how=\"new\"", "")                                                             \
    X(illegal_transitions, kCounter, "illegal_transitions", "fragproxy_illegal_transitions_total", \
      "protocol=\"udp\"", "")

struct UdpStats {
    FP_UDP_STATS(FP_STAT_MEMBER)
};

FP_STAT_TABLE(kUdpStatDefs, UdpStats, FP_UDP_STATS)

class UdpRelay {
  public:
    // Binds the listeners' sockets; throws std::system_error naming what failed (start-up path).
    // log: where a session's access record goes when it ends (null: no access log).
    UdpRelay(Reactor& reactor, const WorkerSettings& settings, unsigned worker_index,
             UdpStats& stats, AccessQueue* log);
    ~UdpRelay();
    UdpRelay(const UdpRelay&) = delete;
    UdpRelay& operator=(const UdpRelay&) = delete;

    void start() noexcept;  // arms the listeners' receives
    // A reload: listeners with the same address keep their socket and take the new settings, new
    // ones open, removed ones take no new sessions and close once their last session ended.
    // Sessions keep the settings they began with. Returns what failed ("" when nothing did).
    std::string reconfigure(const std::vector<UdpListenerSettings>& listeners) noexcept;
    void handle(const Tag& t, io_uring_cqe* cqe) noexcept;
    void tick() noexcept;         // session timeouts
    void after_batch() noexcept;  // batches sent, pages replenished, starved receives re-armed
    void drain() noexcept;        // no new sessions; established ones go on until they expire
    void stop() noexcept;         // no new datagrams; end every session
    bool idle() const noexcept { return sessions_.live() == 0; }
    // Receives wait for buffers: the worker must come back soon even if no CQE arrives.
    bool starved() const noexcept { return any_starved_; }
    std::size_t leaked_pages() noexcept;
    long open_fds() const noexcept { return open_fds_; }

  private:
    struct SendNode;
    // A session's life, as its upstream socket's receive and then its close:
    //   kIdle     no receive armed (a new session; a multishot that ended): armed at once
    //   kArmed    a multishot receive in flight on its upstream socket
    //   kStarved  the receive waits for buffers (in starved_; after_batch() re-arms it)
    //   kClosing  what it queued goes out, its receive is cancelled, its slot freed at the last CQE
    enum class State : std::uint8_t { kIdle, kArmed, kStarved, kClosing };
    static constexpr StateTable<State, 4> kEdges{
        {State::kIdle, State::kArmed},     {State::kIdle, State::kStarved},
        {State::kIdle, State::kClosing},   {State::kArmed, State::kIdle},
        {State::kArmed, State::kClosing},  {State::kStarved, State::kIdle},
        {State::kStarved, State::kClosing}};
    struct Session : SlotHeader {
        State state = State::kIdle;
        bool closing() const noexcept { return state == State::kClosing; }
        std::uint16_t listener = 0;
        std::uint16_t upstream = 0;  // in cfg->upstreams
        int fd = -1;
        std::shared_ptr<const UdpListenerSettings> cfg;  // as when it began (reloads change it)
        bool dirty = false;             // holds an open batch: flushed after this CQE batch
        bool no_gso[2] = {};            // per direction: the path refused a GSO send
        std::uint16_t up_max_seg = 0;   // largest datagram to batch towards the upstream (MTU)
        std::uint32_t responses = 0;    // upstream datagrams since the client's last one
        std::uint64_t last_active = 0;  // the client's last datagram
        std::uint64_t started_ms = 0;
        std::uint64_t bytes[2] = {};  // payload bytes toward the upstream (0), the client (1)
        AccessEnd end = AccessEnd::kNone;
        SockAddr client;
        SendNode* open[2] = {};  // per direction: the batch still taking datagrams
    };
    static constexpr unsigned kToUpstream = 0, kToClient = 1;
    static constexpr unsigned kMaxSegs = gso::kMaxSegments;
    // One sendmsg: up to kMaxSegs datagrams of one session and direction, each a fragment of its
    // receive page (freed when the send completes).
    struct SendNode {
        msghdr msg{};
        sockaddr_storage to{};
        alignas(cmsghdr) unsigned char ctl[CMSG_SPACE(sizeof(std::uint16_t))] = {};
        int fd = -1;
        std::uint32_t slot = 0, gen = 0;  // the session, for a resend without GSO
        std::uint16_t count = 0, seg = 0;
        std::uint8_t dir = 0;
        SendNode* next = nullptr;
        iovec iov[kMaxSegs];
        std::byte* frag[kMaxSegs];
    };
    // Slots are never reused and never move (a deque): the kernel reads msg.
    struct Listener {
        std::shared_ptr<const UdpListenerSettings> cfg;
        Fd fd;
        bool removed = false;  // by a reload: no new sessions; closes after its last session
        msghdr msg{};  // recvmsg template: how much room the source address gets in each buffer
        bool armed = false;
        bool starved = false;
        Balancer balancer;           // this worker's state of the listener's balance
        std::uint32_t sessions = 0;  // live sessions of this listener (its max_sessions)
    };

    void reserve(const std::vector<UdpListenerSettings>& listeners);
    void add_listener(const UdpListenerSettings& cfg, unsigned worker_index);  // throws
    void close_listener(Listener& l) noexcept;
    void arm_listener(unsigned i) noexcept;
    void on_listener(unsigned i, io_uring_cqe* cqe) noexcept;
    void arm_session(std::uint32_t slot) noexcept;
    void starve(std::uint32_t slot) noexcept;
    void on_session(std::uint32_t slot, io_uring_cqe* cqe) noexcept;
    std::uint32_t find_or_open(unsigned listener, const sockaddr* from, socklen_t len) noexcept;
    void set_state(Session& s, State to) noexcept {
        net::set_state(s.state, to, kEdges, stats_.illegal_transitions);
    }
    void close_session(std::uint32_t slot) noexcept;
    void finish_session(std::uint32_t slot) noexcept;
    void queue(std::uint32_t slot, unsigned dir, std::byte* frag, const std::byte* payload,
               std::uint32_t len) noexcept;
    SendNode* open_node(std::uint32_t slot, unsigned dir) noexcept;
    void flush(SendNode* n) noexcept;
    void flush_dirty() noexcept;
    void on_send(std::uint32_t node, int res) noexcept;
    void resend_each(SendNode* n) noexcept;
    void release(SendNode* n, bool free_frags) noexcept;
    void close_fd(int fd) noexcept;
    std::byte* take(io_uring_cqe* cqe) noexcept;

    // A client (listener, address, port) or a source (listener, address; port 0). Fixed size:
    // looking one up allocates nothing.
    struct Key {
        std::uint16_t listener = 0;  // up to 65535 listeners (the config's limit)
        std::uint8_t family = 0;
        std::uint8_t pad = 0;  // compared with memcmp: every byte is set
        std::uint16_t port = 0;
        std::uint8_t addr[16] = {};
        bool operator==(const Key& o) const noexcept;
    };
    struct KeyHash {
        std::size_t operator()(const Key& k) const noexcept;
    };
    static Key key(unsigned listener, const SockAddr& a, bool with_port) noexcept;

    Reactor& reactor_;
    std::unique_ptr<PagePool> pool_;
    std::unique_ptr<RecvPages> recv_;
    std::deque<Listener> listeners_;
    SlotTable<Session> sessions_;
    std::unordered_map<Key, std::uint32_t, KeyHash> by_client_;
    std::unordered_map<Key, std::uint32_t, KeyHash> per_source_;
    std::unique_ptr<SendNode[]> nodes_;
    SendNode* free_nodes_ = nullptr;
    std::vector<std::uint32_t> dirty_;    // sessions holding an open batch; capacity reserved
    std::vector<std::uint32_t> starved_;  // sessions waiting for receive buffers; reserved too
    unsigned index_;
    bool started_ = false;
    bool stopping_ = false;
    bool draining_ = false;
    bool any_starved_ = false;
    long open_fds_ = 0;
    UdpStats& stats_;
    AccessQueue* log_;
    bool gso_;  // udp_gso: datagrams batched into GSO sends
};

}  // namespace fp::net
