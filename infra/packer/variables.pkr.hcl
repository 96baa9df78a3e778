# Inputs for the golden Windows 11 template. Secrets have no default and are
# marked sensitive: pass them with PKR_VAR_* environment variables.

variable "iso_url" {
  type        = string
  description = "Path or URL of a Windows 11 (x64) ISO, e.g. V:/hvkube/iso/Win11_24H2_English_x64.iso."
}

variable "iso_checksum" {
  type        = string
  description = "Checksum of the ISO, e.g. sha256:<hex> (Get-FileHash -Algorithm SHA256)."
}

variable "image_name" {
  type        = string
  description = "Edition to install from the ISO (/IMAGE/NAME in install.wim), e.g. Windows 11 Pro or Windows 11 Enterprise Evaluation."
  default     = "Windows 11 Pro"
}

variable "product_key" {
  type        = string
  description = "Windows product key; leave empty for evaluation or volume media that need none."
  default     = ""
  sensitive   = true
}

variable "agent_username" {
  type        = string
  description = "Local user the agents work as; it logs on automatically."
  default     = "agent"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9._-]{0,19}$", var.agent_username))
    error_message = "agent_username must be 1-20 letters, digits, dots, dashes or underscores, starting with a letter."
  }
}

variable "agent_password" {
  type        = string
  description = "Password of the agent user (also used by Packer's WinRM connection during the build). Pass it as PKR_VAR_agent_password."
  sensitive   = true

  validation {
    condition     = length(var.agent_password) >= 12
    error_message = "agent_password must be at least 12 characters long."
  }
}

variable "computer_name" {
  type        = string
  description = "Computer name of the template (15 characters at most)."
  default     = "hvkube-tpl"

  validation {
    condition     = can(regex("^[A-Za-z0-9-]{1,15}$", var.computer_name))
    error_message = "computer_name must be 1-15 letters, digits or dashes."
  }
}

variable "locale" {
  type        = string
  description = "Windows UI, input and system locale."
  default     = "en-US"
}

variable "time_zone" {
  type        = string
  description = "Windows time zone name."
  default     = "UTC"
}

variable "template_name" {
  type        = string
  description = "Name under which hvkube will know the template (hvkube template create --name)."
  default     = "win11-chrome"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,39}$", var.template_name))
    error_message = "template_name must be lowercase letters, digits and dashes (at most 40)."
  }
}

variable "output_directory" {
  type        = string
  description = "Where the template's VHDX ends up (must not exist yet). Keep it on the host's data disk."
  default     = "V:/hvkube/templates/win11-chrome"
}

variable "build_temp_path" {
  type        = string
  description = "Folder for the build VM's files while it is being built."
  default     = "V:/hvkube/packer"
}

variable "switch_name" {
  type        = string
  description = "Hyper-V switch with DHCP for the build VM (created by the host setup script)."
  default     = "hvkube-nat"
}

variable "memory_mb" {
  type        = number
  description = "Memory of the build VM, and the default memory of pool VMs made from the template."
  default     = 4096
}

variable "cpus" {
  type        = number
  description = "Virtual processors of the build VM, and the default for pool VMs."
  default     = 2
}

variable "disk_size_mb" {
  type        = number
  description = "Size of the template's system disk (Windows 11 needs at least 64 GiB)."
  default     = 81920

  validation {
    condition     = var.disk_size_mb >= 65536
    error_message = "disk_size_mb must be at least 65536 (64 GiB)."
  }
}

variable "gpu" {
  type        = bool
  description = "Register the template with --gpu (pool VMs get a GPU partition)."
  default     = false
}

variable "python_version" {
  type        = string
  description = "Python version installed in the template (python.org installer)."
  default     = "3.12.10"
}

variable "node_version" {
  type        = string
  description = "Node.js version installed in the template (nodejs.org MSI)."
  default     = "22.12.0"
}

variable "headless" {
  type        = bool
  description = "Build without opening a console window on the host."
  default     = true
}
