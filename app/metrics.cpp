#include "app/metrics.hpp"

#include <sstream>

#include "app/proxy.hpp"

namespace fp::app {
namespace {

using T = net::TcpStats;
using U = net::UdpStats;

// One sample per worker of a TcpStats or UdpStats counter, with extra labels.
template <class Stats>
struct Sample {
    const char* labels;  // "" or `key="value"` pairs, without braces
    Counter Stats::*field;
};

class Writer {
  public:
    explicit Writer(const Proxy& p) : proxy_(p) {}

    template <class Stats, std::size_t N>
    void family(const char* name, const char* type, const char* help,
                const Sample<Stats> (&samples)[N]) {
        o_ << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
        for (const auto& s : samples)
            for (std::size_t w = 0; w < proxy_.workers().size(); ++w) {
                o_ << name << "{worker=\"" << w << '"';
                if (*s.labels) o_ << ',' << s.labels;
                o_ << "} " << (stats_of<Stats>(w).*s.field).get() << '\n';
            }
    }
    void line(const std::string& text) { o_ << text << '\n'; }
    std::string str() const { return o_.str(); }

  private:
    template <class Stats>
    const Stats& stats_of(std::size_t w) const {
        if constexpr (std::is_same_v<Stats, T>)
            return proxy_.workers()[w]->tcp_stats();
        else
            return proxy_.workers()[w]->udp_stats();
    }

    const Proxy& proxy_;
    std::ostringstream o_;
};

}  // namespace

std::string render_metrics(const Proxy& proxy) {
    Writer w(proxy);
    w.line("# HELP fragproxy_build_info The running fragproxy.");
    w.line("# TYPE fragproxy_build_info gauge");
    w.line(std::string("fragproxy_build_info{version=\"") + FRAGPROXY_VERSION + "\"} 1");
    w.line("# HELP fragproxy_draining 1 while a graceful drain runs (SIGTERM).");
    w.line("# TYPE fragproxy_draining gauge");
    w.line(std::string("fragproxy_draining ") + (proxy.draining() ? "1" : "0"));
    w.line("# HELP fragproxy_config_reloads_total Reloads (SIGHUP, POST /reload) by result.");
    w.line("# TYPE fragproxy_config_reloads_total counter");
    w.line("fragproxy_config_reloads_total{result=\"ok\"} " + std::to_string(proxy.reloads(true)));
    w.line("fragproxy_config_reloads_total{result=\"error\"} " +
           std::to_string(proxy.reloads(false)));
    w.family("fragproxy_connections_total", "counter", "TCP connections accepted.",
             {Sample<T>{"", &T::accepted}});
    w.family("fragproxy_connections_active", "gauge",
             "TCP connections established (published once a second).", {Sample<T>{"", &T::live}});
    w.family("fragproxy_connections_closed_total", "counter", "TCP connections closed.",
             {Sample<T>{"how=\"any\"", &T::closed}, Sample<T>{"how=\"reset\"", &T::resets},
              Sample<T>{"how=\"cut_with_data\"", &T::cut}});
    w.family("fragproxy_connections_rejected_total", "counter",
             "TCP connections refused at accept.",
             {Sample<T>{"reason=\"max_connections\"", &T::refused}});
    w.family("fragproxy_upstream_connect_failures_total", "counter",
             "Upstream connects that failed (refused, unreachable, timed out).",
             {Sample<T>{"", &T::upstream_failures}});
    w.family("fragproxy_timeouts_total", "counter", "Connections ended by a timeout.",
             {Sample<T>{"kind=\"connect\"", &T::connect_timeouts},
              Sample<T>{"kind=\"idle\"", &T::idle_timeouts},
              Sample<T>{"kind=\"send_stall\"", &T::send_stalls}});
    w.family("fragproxy_bytes_total", "counter", "TCP payload bytes forwarded.",
             {Sample<T>{"direction=\"client_to_upstream\"", &T::bytes_client},
              Sample<T>{"direction=\"upstream_to_client\"", &T::bytes_upstream}});
    w.family("fragproxy_udp_sessions_active", "gauge",
             "UDP sessions established (published once a second).", {Sample<U>{"", &U::live}});
    w.family("fragproxy_udp_sessions_total", "counter", "UDP sessions opened.",
             {Sample<U>{"", &U::sessions}});
    w.family("fragproxy_udp_datagrams_total", "counter", "UDP datagrams relayed.",
             {Sample<U>{"direction=\"in\"", &U::datagrams_in},
              Sample<U>{"direction=\"out\"", &U::datagrams_out}});
    w.family("fragproxy_udp_dropped_total", "counter", "UDP datagrams or sessions dropped.",
             {Sample<U>{"reason=\"session_refused\"", &U::sessions_refused},
              Sample<U>{"reason=\"no_buffer\"", &U::dropped_no_buffer},
              Sample<U>{"reason=\"max_responses\"", &U::dropped_responses},
              Sample<U>{"reason=\"upstream_error\"", &U::upstream_errors}});
    w.family("fragproxy_alloc_pages_in_use", "gauge",
             "Pages of the TCP arena in use (published once a second).",
             {Sample<T>{"", &T::pages_in_use}});
    w.family("fragproxy_recv_buffer_waits_total", "counter",
             "Receives that waited for receive buffers.",
             {Sample<T>{"protocol=\"tcp\"", &T::starved}});
    w.family("fragproxy_memory_pressure", "gauge", "0 below, 1 pressure, 2 above.",
             {Sample<T>{"", &T::pressure_level}});
    w.family("fragproxy_collapses_total", "counter",
             "Stuck queues copied into compact fragments under memory pressure.",
             {Sample<T>{"", &T::collapses}});
    if (const AccessLog* log = proxy.access_log()) {
        w.line(
            "# HELP fragproxy_access_log_dropped_total Access-log records dropped: the logger "
            "was behind.");
        w.line("# TYPE fragproxy_access_log_dropped_total counter");
        for (std::size_t i = 0; i < proxy.workers().size(); ++i)
            w.line("fragproxy_access_log_dropped_total{worker=\"" + std::to_string(i) + "\"} " +
                   std::to_string(log->dropped(unsigned(i))));
        w.line("# HELP fragproxy_access_log_records_total Access-log lines written.");
        w.line("# TYPE fragproxy_access_log_records_total counter");
        w.line("fragproxy_access_log_records_total " + std::to_string(log->written()));
    }
    return w.str();
}

}  // namespace fp::app
