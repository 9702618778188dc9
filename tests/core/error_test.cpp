// core/error and core/error_message: what a fired check and a libtorch error look like to a
// user.

#include "loom/core/error.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "loom/core/error_message.hpp"

namespace loom {
namespace {

TEST(Error, AFiredCheckSaysItIsABugToReport) {
  try {
    const int n = 0;
    LOOM_CHECK(n > 0, "expected a positive count, got " << n);
    FAIL() << "the check did not fire";
  } catch (const InputError&) {
    FAIL() << "a fired check is not bad input";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("internal error, please report it", 0), 0u) << what;
    EXPECT_NE(what.find("expected a positive count, got 0"), std::string::npos) << what;
    EXPECT_NE(what.find("[check `n > 0` failed at tests/core/error_test.cpp:"), std::string::npos)
        << what;
  }
}

TEST(ErrorMessage, LibtorchStackTracesAreCutKeepingWhereItWasRaised) {
  // The shape of c10::Error::what() (message, "Exception raised from", frames).
  const std::runtime_error torch_like(
      "Expected all tensors to be on the same device\n"
      "Exception raised from check_device at ../aten/src/ATen/Tensor.cpp:123 (most recent call "
      "first):\n"
      "frame #0: c10::Error::Error(...) + 0x9a (0x7f in libc10.so)\n"
      "frame #1: at::native::add(...) + 0x10 (0x7f in libtorch_cpu.so)\n");
  EXPECT_EQ(messageForUser(torch_like),
            "Expected all tensors to be on the same device (Exception raised from check_device at "
            "../aten/src/ATen/Tensor.cpp:123)");
  const std::runtime_error plain("disk full");
  EXPECT_EQ(messageForUser(plain), "disk full");
}

}  // namespace
}  // namespace loom
