#include "loom/core/error.hpp"

#include <cstring>

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
  std::ostringstream out;
  out << message << " [check `" << condition << "` failed at " << shown << ":" << line << "]";
  throw Error(out.str());
}

}  // namespace loom::detail
