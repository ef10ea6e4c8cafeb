/* A fixture for arch_layers_detects_cycle: cycle_a.c and cycle_b.c call
 * each other, so layers.py must report the circle and exit 1. */
int td_arch_fixture_b(int n);

int td_arch_fixture_a(int n)
{
    return n > 0 ? td_arch_fixture_b(n - 1) : 0;
}
