output "resource_group_name" {
  description = "Resource group holding the host; terraform destroy removes it."
  value       = azurerm_resource_group.main.name
}

output "host_public_ip" {
  description = "Public address of the Hyper-V host (RDP from allowed_ip only)."
  value       = azurerm_public_ip.host.ip_address
}

output "rdp_command" {
  description = "Command to open an RDP session to the host from Windows."
  value       = "mstsc /v:${azurerm_public_ip.host.ip_address}"
}

output "admin_username" {
  description = "Administrator account on the host (its password is the admin_password you supplied)."
  value       = var.admin_username
}

output "data_drive" {
  description = "Drive on the host holding templates, pooled VMs and hvkube state."
  value       = "${var.data_drive_letter}:"
}

output "guest_switch" {
  description = "Internal Hyper-V switch (with NAT and DHCP) for guest VMs; the Packer build and pools use it."
  value       = "hvkube-nat"
}

output "setup_log" {
  description = "Log of the host setup script, on the host."
  value       = "C:\\ProgramData\\hvkube\\logs\\setup-host.log"
}
