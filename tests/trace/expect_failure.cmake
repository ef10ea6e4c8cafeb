# Runs test_trace_replay on input it must reject and checks that it did so
# the intended way: the given exit status (1 = not endContent, 2 = unreadable
# or invalid trace) and a message matching REGEX -- so a crash or a
# sanitizer report, which also exit non-zero, does not count as a pass.
#
#   cmake -DEXE=... -DFILE=... -DCODE=2 -DREGEX=... -P expect_failure.cmake
execute_process(COMMAND ${EXE} ${FILE}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(all "${out}${err}")
message(STATUS "exit status ${rc}; output:\n${all}")
if(all MATCHES "Sanitizer|runtime error")
  message(FATAL_ERROR "sanitizer report")
endif()
if(NOT rc STREQUAL "${CODE}")
  message(FATAL_ERROR "expected exit status ${CODE}, got ${rc}")
endif()
if(NOT all MATCHES "${REGEX}")
  message(FATAL_ERROR "output does not match: ${REGEX}")
endif()
