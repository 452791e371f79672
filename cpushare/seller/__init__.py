"""The CPUShare seller: one process per `.cpu` order, leasing jobs and running them jailed.

Standard library only: it runs inside the live image (`python3 -m cpushare.seller FILE.cpu`)
as well as on any Linux machine (`livecd sell FILE.cpu...`).
"""
