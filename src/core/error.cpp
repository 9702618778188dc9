#include "loom/core/error.hpp"

#include <cstring>

#include "loom/core/error_message.hpp"

namespace loom::detail {

void throwCheckFailure(const char* file, int line, const char* condition,
                       const std::string& message) {
  // Keep only the path from the project root on: "src/comm/world.cpp", not the build path.
  const char* shown = file;
  for (const char* root : {"/src/", "/include/", "/tests/"}) {
    if (const char* at = std::strstr(file, root)) {
      shown = at + 1;
      break;
    }
  }
  // A check that fires is a bug in Loom (bad input has InputError): say so.
  std::ostringstream out;
  out << "internal error, please report it with the command that led here: " << message
      << " [check `" << condition << "` failed at " << shown << ":" << line << "]";
  throw Error(out.str());
}

}  // namespace loom::detail

namespace loom {

std::string messageForUser(const std::exception& e) {
  std::string text = e.what();
  // c10::Error: "<message>\nException raised from <function> at <file>:<line> (most recent
  // call first):\nframe #0: ...". Keep the message and the place, drop the frames.
  const size_t raised = text.find("\nException raised from ");
  if (raised != std::string::npos) {
    const size_t end = text.find('\n', raised + 1);
    std::string place =
        text.substr(raised + 1, end == std::string::npos ? std::string::npos : end - raised - 1);
    const size_t most_recent = place.find(" (most recent call first)");
    if (most_recent != std::string::npos) place.erase(most_recent);
    text = text.substr(0, raised) + " (" + place + ")";
  }
  return text;
}

}  // namespace loom
