#pragma once
// How an error reaches the user's terminal.

#include <exception>
#include <string>

namespace loom {

/// The text of an exception as a user should see it: libtorch's errors carry a C++ stack
/// trace after their message ("Exception raised from ... frame #0 ..."), which is cut off
/// (the line that says where it was raised is kept).
std::string messageForUser(const std::exception& e);

}  // namespace loom
