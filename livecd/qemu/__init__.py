"""The QEMU harness: boot the live CD headless and check what it says and does.

- `machine`: the QEMU command line (firmware, media, NIC, memory, the restricted network);
- `direct`: the ISO's kernel booted directly with options of the harness's own (the
  shell's `cpushare.shell=ttyS1`, which a headless guest cannot type at a boot menu);
- `guest`: a running headless guest (serial console, QMP, shell on ttyS1, power off);
- `events`: the guest's `cpushare:` console lines as events, and waiting for them;
- `report`: what a boot run found (milestones, problems), as a table or JSON;
- `medium`: the CPUSHARE medium that carries orders into the guest;
- `smoke`, `sale`, `matrix`: the scenarios, from a plain boot to a whole sale;
- `sale_market`, `sale_checks`: the sale's stand-in market (accounts, order, jobs,
  the host's honest seller) and its checks (results, coins, sellers).
"""
