#define BOOST_TEST_MODULE troupe_devices
#include <boost/test/unit_test.hpp>
