# Runs CMD ("|"-separated) and passes only if it exits WANT_RC and its
# output contains WANT_OUT: a checker test that accepts any failure would
# also accept the checker crashing.
string(REPLACE "|" ";" _cmd "${CMD}")
execute_process(COMMAND ${_cmd} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out
                ERROR_VARIABLE _out)
message("${_out}")
if(NOT _rc STREQUAL "${WANT_RC}")
  message(FATAL_ERROR "exit code ${_rc}, expected ${WANT_RC}")
endif()
string(FIND "${_out}" "${WANT_OUT}" _at)
if(_at EQUAL -1)
  message(FATAL_ERROR "output lacks '${WANT_OUT}'")
endif()
