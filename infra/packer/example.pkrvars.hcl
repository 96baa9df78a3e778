# Copy to win11.pkrvars.hcl (ignored by git) and edit. The agent password is
# not set here: $env:PKR_VAR_agent_password = "..." in the shell that runs packer.

iso_url       = "V:/hvkube/iso/Win11_24H2_English_x64.iso"
iso_checksum  = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
image_name    = "Windows 11 Pro"
template_name = "win11-chrome"
memory_mb     = 4096
cpus          = 2
