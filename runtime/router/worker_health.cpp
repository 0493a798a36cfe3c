#include "runtime/router/worker_health.hpp"

namespace troupe {

void worker_health::on_probe(bool ok, std::string why) {
  last_probe_ok_ = ok;
  if (ok) {
    failed_in_a_row_ = 0;
    probe_ok_ = true;
    return;
  }
  ++failed_in_a_row_;
  if (failed_in_a_row_ >= failures_to_leave) probe_ok_ = false;
  why_ = std::move(why) + (failed_in_a_row_ == 1 ? std::string(" (once)") : " (" + std::to_string(failed_in_a_row_) + " times in a row)");
}

void worker_health::on_connection(bool up, std::string why) {
  connected_ = up;
  if (!up) why_ = std::move(why);
}

} // namespace troupe
