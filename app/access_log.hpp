#pragma once
// AccessLog (access_log: {path, format}): one line per TCP connection and UDP session when it
// ends — time, listener, protocol, client, upstream, duration, bytes each way, how it ended. The
// workers hand records over through their own bounded AccessQueue (net/base/access_record.hpp; a
// full queue drops the record and counts it, never blocks a worker); this class's thread takes them
// out every kPass, formats them (json or text) and appends them to the file with one write per
// pass. reopen() (SIGUSR1, logrotate's convention) makes the thread open the path again.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "app/config.hpp"
#include "net/base/access_record.hpp"

namespace fp::app {

class AccessLog {
  public:
    static constexpr std::chrono::milliseconds kPass{20};

    // Opens the file now (throws std::system_error naming it) and starts the thread.
    AccessLog(AccessLogSettings settings, unsigned workers);
    // Writes what the queues still hold, then stops. The workers must have stopped.
    ~AccessLog();
    AccessLog(const AccessLog&) = delete;
    AccessLog& operator=(const AccessLog&) = delete;

    net::AccessQueue* queue(unsigned worker) noexcept { return queues_[worker].get(); }
    std::uint64_t dropped(unsigned worker) const noexcept { return queues_[worker]->dropped.get(); }
    std::uint64_t written() const noexcept { return written_.load(std::memory_order_relaxed); }
    void reopen() noexcept { reopen_.store(true, std::memory_order_relaxed); }

    // One record as a line (tests and the thread).
    static std::string format(const net::AccessRecord& r, bool json, std::uint64_t wall_ms);

  private:
    void run();
    void pass();
    int open_file() const;  // throws std::system_error

    AccessLogSettings settings_;
    std::vector<std::unique_ptr<net::AccessQueue>> queues_;
    int fd_ = -1;
    std::string buf_;
    std::atomic<bool> reopen_{false};
    std::atomic<std::uint64_t> written_{0};
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::thread thread_;
};

}  // namespace fp::app
