# Inputs for the hvkube Hyper-V host. Secrets have no default and are marked
# sensitive: pass them with TF_VAR_* environment variables, never in a file
# that is committed.

variable "subscription_id" {
  type        = string
  description = "Azure subscription to deploy into (az account show --query id -o tsv)."
}

variable "location" {
  type        = string
  description = "Azure region. It must offer the chosen vm_size."
  default     = "westeurope"
}

variable "resource_group_name" {
  type        = string
  description = "Resource group created for the host and everything attached to it."
  default     = "rg-hvkube"
}

variable "name_prefix" {
  type        = string
  description = "Prefix for resource names; also the start of the host's computer name."
  default     = "hvkube"

  validation {
    # The Windows computer name is "<prefix>-host" and must stay within 15 characters.
    condition     = can(regex("^[a-z][a-z0-9]{1,9}$", var.name_prefix))
    error_message = "name_prefix must be 2-10 lowercase letters or digits, starting with a letter."
  }
}

variable "vm_size" {
  type        = string
  description = "Host size. Must support nested virtualization and premium storage (Intel D/E s-series v3 to v5)."
  default     = "Standard_D16s_v5"

  validation {
    # Dsv3/Dsv4/Dsv5 (and their d/l variants) and Esv3/Esv4/Esv5 run nested
    # Hyper-V. AMD (a) and Arm (p) sizes are rejected, as are sizes without
    # premium storage support (no "s").
    condition     = can(regex("^Standard_[DE][0-9]+l?d?s_v[345]$", var.vm_size))
    error_message = "vm_size must be an Intel D or E s-series v3-v5 size, e.g. Standard_D16s_v5, Standard_D32ds_v5 or Standard_E16s_v5."
  }
}

variable "os_disk_size_gb" {
  type        = number
  description = "Size of the host's OS disk."
  default     = 128
}

variable "data_disk_size_gb" {
  type        = number
  description = "Size of the premium data disk that holds templates, VM disks and saved memory."
  default     = 512

  validation {
    # Host read caching (used for fast resume) is only available below 4 TiB.
    condition     = var.data_disk_size_gb >= 64 && var.data_disk_size_gb <= 4095
    error_message = "data_disk_size_gb must be between 64 and 4095."
  }
}

variable "data_drive_letter" {
  type        = string
  description = "Drive letter for the data disk inside the host (avoid D:, the temp disk on many sizes)."
  default     = "V"

  validation {
    condition     = can(regex("^[E-Z]$", var.data_drive_letter))
    error_message = "data_drive_letter must be a single capital letter from E to Z."
  }
}

variable "admin_username" {
  type        = string
  description = "Local administrator of the host; also added to Hyper-V Administrators."
  default     = "hvadmin"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9._-]{0,19}$", var.admin_username))
    error_message = "admin_username must be 1-20 letters, digits, dots, dashes or underscores, starting with a letter."
  }

  validation {
    condition     = !contains(["admin", "administrator", "root", "guest", "user", "test"], lower(var.admin_username))
    error_message = "Azure rejects common admin names; choose another admin_username."
  }
}

variable "admin_password" {
  type        = string
  description = "Password of the host's administrator. Pass it as TF_VAR_admin_password."
  sensitive   = true

  validation {
    condition     = length(var.admin_password) >= 12 && length(var.admin_password) <= 123
    error_message = "admin_password must be 12 to 123 characters long."
  }
}

variable "allowed_ip" {
  type        = string
  description = "The only source allowed to reach the host over RDP: one IPv4 address or CIDR, e.g. 203.0.113.7/32."

  validation {
    condition     = !contains(["*", "0.0.0.0", "0.0.0.0/0", "::/0", "internet", "any"], lower(trimspace(var.allowed_ip)))
    error_message = "allowed_ip must not open RDP to everybody: *, 0.0.0.0/0, Internet and Any are refused."
  }

  validation {
    condition     = !endswith(trimspace(var.allowed_ip), "/0")
    error_message = "allowed_ip must not be a /0 network."
  }

  validation {
    condition     = can(cidrhost(var.allowed_ip, 0)) || can(cidrhost("${var.allowed_ip}/32", 0))
    error_message = "allowed_ip must be one IPv4 address (203.0.113.7) or CIDR (203.0.113.0/28)."
  }
}

variable "hvkube_wheel_url" {
  type        = string
  description = "HTTPS URL of the hvkube wheel to install on the host. It may carry a SAS token, so it is treated as a secret."
  sensitive   = true

  validation {
    condition     = can(regex("^https://[^\\s'\"`]+\\.whl([?][^\\s'\"`]*)?$", var.hvkube_wheel_url))
    error_message = "hvkube_wheel_url must be an https:// URL of a .whl file (an optional query string is allowed) without quotes or spaces."
  }
}

variable "python_version" {
  type        = string
  description = "Python version installed on the host from python.org (3.11 or newer)."
  default     = "3.12.10"

  validation {
    condition     = can(regex("^3\\.(1[1-9])\\.[0-9]+$", var.python_version))
    error_message = "python_version must look like 3.12.10 (3.11 or newer)."
  }
}

variable "packer_version" {
  type        = string
  description = "Packer version installed on the host to build the golden template."
  default     = "1.11.2"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.packer_version))
    error_message = "packer_version must look like 1.11.2."
  }
}

variable "winsw_version" {
  type        = string
  description = "WinSW release used to run 'hvkube run' as a Windows service."
  default     = "2.12.0"
}

variable "winsw_sha256" {
  type        = string
  description = "Expected SHA-256 of WinSW-x64.exe. Empty: the hash is logged but not enforced (pin it for production)."
  default     = ""

  validation {
    condition     = var.winsw_sha256 == "" || can(regex("^[0-9A-Fa-f]{64}$", var.winsw_sha256))
    error_message = "winsw_sha256 must be empty or 64 hexadecimal characters."
  }
}

variable "vnet_cidr" {
  type        = string
  description = "Address space of the Azure virtual network (must not overlap guest_subnet)."
  default     = "10.60.0.0/16"
}

variable "guest_subnet" {
  type        = string
  description = "Private subnet behind the host's NAT switch; guests get addresses from the host's DHCP scope."
  default     = "192.168.100.0/24"

  validation {
    condition     = can(cidrhost(var.guest_subnet, 0)) && tonumber(split("/", var.guest_subnet)[1]) >= 16 && tonumber(split("/", var.guest_subnet)[1]) <= 24
    error_message = "guest_subnet must be an IPv4 CIDR with a prefix between /16 and /24."
  }
}

variable "auto_shutdown_time" {
  type        = string
  description = "Daily time (HHMM) at which Azure shuts the host down to save money; null disables it."
  default     = null

  validation {
    condition     = var.auto_shutdown_time == null || can(regex("^([01][0-9]|2[0-3])[0-5][0-9]$", var.auto_shutdown_time))
    error_message = "auto_shutdown_time must be HHMM (24 h), e.g. 1900, or null."
  }
}

variable "auto_shutdown_timezone" {
  type        = string
  description = "Windows time zone name for auto_shutdown_time."
  default     = "UTC"
}

variable "tags" {
  type        = map(string)
  description = "Tags applied to every resource."
  default = {
    project = "hvkube"
  }
}

variable "disk_encryption_expires" {
  type        = string
  description = "When the disk encryption key expires (RFC 3339, UTC); it is rotated 30 days before, automatically."
  default     = "2028-12-31T00:00:00Z"

  validation {
    condition     = can(formatdate("YYYY", var.disk_encryption_expires))
    error_message = "disk_encryption_expires must be an RFC 3339 time such as 2028-12-31T00:00:00Z."
  }
}
