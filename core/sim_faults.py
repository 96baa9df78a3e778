"""The faults the simulated host can be given (`hvkube sim fault KIND`), with what each does.

Apart from core.backends.sim so that the command line can list them without loading it.
"""

FAULT_KINDS = {
    "corrupt-saved-state": "the VM's saved state is damaged; its next resume fails",
    "delete-vm": "the VM is removed from the host, as if deleted in Hyper-V Manager",
    "ip-change": "the VM gets a new IP address on its next resume",
    "hang": "the next operation of the given kind (or any) hangs until it times out",
    "out-of-memory": "the host reports no free memory; starting a VM fails",
    "fail": "the next operation of the given kind (or any) fails with an error",
    "permission-denied": "the next operation fails as if the user were not a Hyper-V admin",
    "foreign-vm": "a VM that hvkube did not make appears on the host with the given name",
    "broken-vm": "the VM's files are gone: the host can no longer read it (a ghost VM)",
}
