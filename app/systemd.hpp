#pragma once
// The service manager's notification protocol (systemd Type=notify, through libsystemd's
// sd_notify): READY=1 once the listeners are bound, RELOADING=1 (with MONOTONIC_USEC) while a
// reload runs then READY=1 again, STOPPING=1 when the drain begins, STATUS= lines for
// `systemctl status`. Without NOTIFY_SOCKET (not under systemd) every call does nothing.
#include <string>

namespace fp::app::systemd {

void ready(const std::string& status);
void reloading();
void stopping(const std::string& status);

}  // namespace fp::app::systemd
