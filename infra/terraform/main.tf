# An Azure Windows Server 2022 VM that runs Hyper-V (nested virtualization),
# with a premium data disk for templates and pooled VMs, reachable over RDP
# from one address only. scripts/setup-host.ps1 turns it into an hvkube host.

locals {
  host_name = "${var.name_prefix}-host"

  # The setup script travels as VM user data (readable from the instance
  # metadata service inside the VM, updatable without recreating the VM).
  # It holds no secrets.
  setup_script = file("${path.module}/scripts/setup-host.ps1")

  # Canonical form of the guest subnet (host bits cleared), e.g. 192.168.100.0/24.
  guest_network = cidrsubnet(var.guest_subnet, 0, 0)

  # Small bootstrap run by the Custom Script Extension: fetch the script from
  # user data, save it where only administrators can write, run it. Sent
  # base64-encoded (UTF-16LE, as powershell -EncodedCommand expects), so no
  # quoting problems; it sits in protected settings because it carries the
  # wheel URL, which may contain a SAS token.
  bootstrap = join("\n", [
    "$ErrorActionPreference = 'Stop'",
    "$dir = Join-Path $env:ProgramFiles 'hvkube\\setup'",
    "New-Item -ItemType Directory -Force -Path $dir | Out-Null",
    "$imds = 'http://169.254.169.254/metadata/instance/compute/userData?api-version=2021-01-01&format=text'",
    "$b64 = Invoke-RestMethod -Headers @{ Metadata = 'true' } -Uri $imds -UseBasicParsing",
    "$script = Join-Path $dir 'setup-host.ps1'",
    "[IO.File]::WriteAllBytes($script, [Convert]::FromBase64String($b64))",
    join(" ", [
      "& $script",
      "-WheelUrl '${var.hvkube_wheel_url}'",
      "-AdminUser '${var.admin_username}'",
      "-DataDiskSizeGB ${var.data_disk_size_gb}",
      "-DataDriveLetter '${var.data_drive_letter}'",
      "-GuestSubnet '${local.guest_network}'",
      "-GuestGateway '${cidrhost(var.guest_subnet, 1)}'",
      "-DhcpStart '${cidrhost(var.guest_subnet, 10)}'",
      "-DhcpEnd '${cidrhost(var.guest_subnet, -2)}'",
      "-PythonVersion '${var.python_version}'",
      "-PackerVersion '${var.packer_version}'",
      "-WinswVersion '${var.winsw_version}'",
      "-WinswSha256 '${var.winsw_sha256}'",
    ]),
    "exit $LASTEXITCODE",
  ])
}

resource "azurerm_resource_group" "main" {
  name     = var.resource_group_name
  location = var.location
  tags     = var.tags
}

resource "azurerm_virtual_network" "main" {
  name                = "${var.name_prefix}-vnet"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  address_space       = [var.vnet_cidr]
  tags                = var.tags
}

resource "azurerm_subnet" "host" {
  name                 = "${var.name_prefix}-host-subnet"
  resource_group_name  = azurerm_resource_group.main.name
  virtual_network_name = azurerm_virtual_network.main.name
  address_prefixes     = [cidrsubnet(var.vnet_cidr, 8, 1)]
}

# The same rules on the subnet as on the host's NIC: anything else placed in the subnet
# later is covered too.
resource "azurerm_subnet_network_security_group_association" "host" {
  subnet_id                 = azurerm_subnet.host.id
  network_security_group_id = azurerm_network_security_group.host.id
}

resource "azurerm_public_ip" "host" {
  name                = "${var.name_prefix}-host-ip"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  allocation_method   = "Static"
  sku                 = "Standard"
  tags                = var.tags
}

# Inbound: RDP from allowed_ip only. hvkube exposes no network API; the
# controller runs on the host and is driven from the host's own shell.
# Everything else inbound falls through to Azure's default DenyAllInBound.
resource "azurerm_network_security_group" "host" {
  name                = "${var.name_prefix}-host-nsg"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  tags                = var.tags

  security_rule {
    name                       = "allow-rdp-from-operator"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_port_range          = "*"
    destination_port_range     = "3389"
    source_address_prefix      = var.allowed_ip
    destination_address_prefix = "VirtualNetwork"
  }
}

resource "azurerm_network_interface" "host" {
  #checkov:skip=CKV_AZURE_119:The operator reaches the host over RDP through this public IP; the NSG on the NIC and the subnet admits port 3389 from allowed_ip only (a validated single address or CIDR, never /0).
  name                = "${var.name_prefix}-host-nic"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  tags                = var.tags

  ip_configuration {
    name                          = "primary"
    subnet_id                     = azurerm_subnet.host.id
    private_ip_address_allocation = "Dynamic"
    public_ip_address_id          = azurerm_public_ip.host.id
  }
}

resource "azurerm_network_interface_security_group_association" "host" {
  network_interface_id      = azurerm_network_interface.host.id
  network_security_group_id = azurerm_network_security_group.host.id
}

resource "azurerm_windows_virtual_machine" "host" {
  #checkov:skip=CKV_AZURE_50:The one extension, hvkube-setup (Custom Script Extension), is how the host is set up; it runs a script from this repository, fetched from the VM's own user data.
  name                = local.host_name
  computer_name       = local.host_name
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  size                = var.vm_size
  admin_username      = var.admin_username
  admin_password      = var.admin_password
  tags                = var.tags

  network_interface_ids = [azurerm_network_interface.host.id]

  # The temporary disk and the disk caches are encrypted on the host too (the subscription
  # needs the EncryptionAtHost feature registered once: see infra/README.md).
  encryption_at_host_enabled = true

  # The setup script, fetched from the metadata service by the bootstrap.
  user_data = base64encode(local.setup_script)

  os_disk {
    caching                = "ReadWrite"
    storage_account_type   = "Premium_LRS"
    disk_size_gb           = var.os_disk_size_gb
    disk_encryption_set_id = azurerm_disk_encryption_set.main.id
  }

  source_image_reference {
    publisher = "MicrosoftWindowsServer"
    offer     = "WindowsServer"
    sku       = "2022-datacenter-g2"
    version   = "latest"
  }

  # Trusted launch (secure_boot_enabled / vtpm_enabled) is left off: the
  # point of this VM is nested Hyper-V.

  # The disk encryption set must be able to read its key before a disk uses it.
  depends_on = [azurerm_key_vault_access_policy.disk_encryption_set]
}

resource "azurerm_managed_disk" "data" {
  name                 = "${var.name_prefix}-data"
  location             = azurerm_resource_group.main.location
  resource_group_name  = azurerm_resource_group.main.name
  storage_account_type = "Premium_LRS"
  create_option        = "Empty"
  disk_size_gb         = var.data_disk_size_gb
  tags                 = var.tags

  # Reached only through its VM: no export or import over the network.
  public_network_access_enabled = false
  network_access_policy         = "DenyAll"
  disk_encryption_set_id        = azurerm_disk_encryption_set.main.id

  depends_on = [azurerm_key_vault_access_policy.disk_encryption_set]
}

resource "azurerm_virtual_machine_data_disk_attachment" "data" {
  managed_disk_id    = azurerm_managed_disk.data.id
  virtual_machine_id = azurerm_windows_virtual_machine.host.id
  lun                = 0
  # Read caching speeds up what a pool reads most: the shared template
  # parent disk and the saved memory read back on every resume.
  caching = "ReadOnly"
}

resource "azurerm_virtual_machine_extension" "setup" {
  name                       = "hvkube-setup"
  virtual_machine_id         = azurerm_windows_virtual_machine.host.id
  publisher                  = "Microsoft.Compute"
  type                       = "CustomScriptExtension"
  type_handler_version       = "1.10"
  auto_upgrade_minor_version = true
  tags                       = var.tags

  # Changing the script changes this number, which makes the extension run
  # again (the script is idempotent).
  settings = jsonencode({
    timestamp = parseint(substr(sha256(local.setup_script), 0, 7), 16)
  })

  protected_settings = jsonencode({
    commandToExecute = "powershell.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand ${textencodebase64(local.bootstrap, "UTF-16LE")}"
  })

  depends_on = [azurerm_virtual_machine_data_disk_attachment.data]
}

resource "azurerm_dev_test_global_vm_shutdown_schedule" "host" {
  count                 = var.auto_shutdown_time == null ? 0 : 1
  virtual_machine_id    = azurerm_windows_virtual_machine.host.id
  location              = azurerm_resource_group.main.location
  enabled               = true
  daily_recurrence_time = var.auto_shutdown_time
  timezone              = var.auto_shutdown_timezone
  tags                  = var.tags

  notification_settings {
    enabled = false
  }
}

# Disks are encrypted with a key of our own (customer-managed), held in a Key Vault that
# only the operator's address and Azure services reach.
data "azurerm_client_config" "current" {}

resource "azurerm_key_vault" "disks" {
  #checkov:skip=CKV_AZURE_189:Terraform itself creates the key from the operator's machine, so the vault keeps a public endpoint; network_acls deny everything but allowed_ip and Azure services.
  #checkov:skip=CKV2_AZURE_32:No private endpoint for the same reason: the operator's machine is outside the virtual network.
  name                        = "${var.name_prefix}-kv-${substr(sha256(azurerm_resource_group.main.id), 0, 8)}"
  location                    = azurerm_resource_group.main.location
  resource_group_name         = azurerm_resource_group.main.name
  tenant_id                   = data.azurerm_client_config.current.tenant_id
  sku_name                    = "premium"
  enabled_for_disk_encryption = true
  purge_protection_enabled    = true
  soft_delete_retention_days  = 90
  tags                        = var.tags

  network_acls {
    default_action = "Deny"
    bypass         = "AzureServices"
    ip_rules       = [var.allowed_ip]
  }
}

resource "azurerm_key_vault_access_policy" "operator" {
  key_vault_id = azurerm_key_vault.disks.id
  tenant_id    = data.azurerm_client_config.current.tenant_id
  object_id    = data.azurerm_client_config.current.object_id

  key_permissions = ["Create", "Delete", "Get", "Purge", "Recover", "Update", "GetRotationPolicy", "SetRotationPolicy"]
}

resource "azurerm_key_vault_key" "disks" {
  name            = "${var.name_prefix}-disks"
  key_vault_id    = azurerm_key_vault.disks.id
  key_type        = "RSA-HSM"
  key_size        = 3072
  key_opts        = ["wrapKey", "unwrapKey"]
  expiration_date = var.disk_encryption_expires
  tags            = var.tags

  rotation_policy {
    automatic {
      time_before_expiry = "P30D"
    }
    expire_after         = "P2Y"
    notify_before_expiry = "P29D"
  }

  depends_on = [azurerm_key_vault_access_policy.operator]
}

resource "azurerm_disk_encryption_set" "main" {
  name                      = "${var.name_prefix}-des"
  location                  = azurerm_resource_group.main.location
  resource_group_name       = azurerm_resource_group.main.name
  key_vault_key_id          = azurerm_key_vault_key.disks.versionless_id
  auto_key_rotation_enabled = true
  tags                      = var.tags

  identity {
    type = "SystemAssigned"
  }
}

resource "azurerm_key_vault_access_policy" "disk_encryption_set" {
  key_vault_id = azurerm_key_vault.disks.id
  tenant_id    = azurerm_disk_encryption_set.main.identity[0].tenant_id
  object_id    = azurerm_disk_encryption_set.main.identity[0].principal_id

  key_permissions = ["Get", "WrapKey", "UnwrapKey"]
}
