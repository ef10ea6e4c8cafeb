/* The other half of the circle in cycle_a.c; cycle_c.c sits below both. */
int td_arch_fixture_a(int n);
int td_arch_fixture_c(int n);

int td_arch_fixture_b(int n)
{
    return n > 0 ? td_arch_fixture_a(n - 1) : td_arch_fixture_c(n);
}
