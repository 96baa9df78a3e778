# Golden Windows 11 template for hvkube, built on the Hyper-V host itself:
#   packer init .
#   packer build -var-file=win11.pkrvars.hcl .
# The result is one VHDX; the last step prints the hvkube command that
# registers it.

packer {
  required_version = ">= 1.9.0"

  required_plugins {
    hyperv = {
      source  = "github.com/hashicorp/hyperv"
      version = "~> 1.1"
    }
  }
}

locals {
  # With skip_export the disk is left in "<output_directory>/Virtual Hard Disks".
  vhdx_path = "${var.output_directory}/Virtual Hard Disks/${var.template_name}.vhdx"

  hvkube_register_command = join(" ", compact([
    "hvkube template create",
    "--name ${var.template_name}",
    "--vhdx \"${replace(local.vhdx_path, "/", "\\")}\"",
    "--memory-mb ${var.memory_mb}",
    "--cpus ${var.cpus}",
    var.gpu ? "--gpu" : "",
  ]))

  # Values placed in XML text must be escaped; & first.
  xml_agent_password = replace(replace(replace(replace(replace(var.agent_password,
  "&", "&amp;"), "<", "&lt;"), ">", "&gt;"), "\"", "&quot;"), "'", "&apos;")

  # No <Key> element at all when no key is given (evaluation media).
  xml_product_key = var.product_key == "" ? "" : "<Key>${var.product_key}</Key>"
}

source "hyperv-iso" "win11" {
  iso_url      = var.iso_url
  iso_checksum = var.iso_checksum

  vm_name              = var.template_name
  generation           = 2
  enable_secure_boot   = true
  secure_boot_template = "MicrosoftWindows"
  # No vTPM: pool VMs cloned from this disk have none either, and a TPM at
  # build time would let Windows turn on device encryption, which clones
  # could not unlock. The answer file skips the TPM check instead.
  enable_tpm            = false
  enable_dynamic_memory = false
  memory                = var.memory_mb
  cpus                  = var.cpus
  disk_size             = var.disk_size_mb
  switch_name           = var.switch_name
  temp_path             = var.build_temp_path
  output_directory      = var.output_directory
  skip_export           = true
  headless              = var.headless

  # The answer file goes on a second CD; its password comes from a variable.
  cd_label = "hvkube-answer"
  cd_content = {
    "autounattend.xml" = templatefile("${path.root}/answer/autounattend.pkrtpl.hcl", {
      agent_username = var.agent_username
      agent_password = local.xml_agent_password
      computer_name  = var.computer_name
      image_name     = var.image_name
      product_key    = local.xml_product_key
      locale         = var.locale
      time_zone      = var.time_zone
    })
  }

  # Generation 2 firmware asks for a key press to boot from the DVD.
  boot_wait    = "2s"
  boot_command = ["<spacebar><wait1><spacebar><wait1><spacebar><wait1><spacebar>"]

  communicator   = "winrm"
  winrm_username = var.agent_username
  winrm_password = var.agent_password
  winrm_timeout  = "2h"

  # finalize.ps1 (uploaded last) turns the build-only WinRM settings off for
  # the next boot and powers off.
  shutdown_command = "powershell.exe -NoProfile -ExecutionPolicy Bypass -File C:\\Windows\\Temp\\hvkube-finalize.ps1"
  shutdown_timeout = "30m"
}

build {
  sources = ["source.hyperv-iso.win11"]

  provisioner "powershell" {
    script = "${path.root}/scripts/install-software.ps1"
    environment_vars = [
      "HVKUBE_PYTHON_VERSION=${var.python_version}",
      "HVKUBE_NODE_VERSION=${var.node_version}",
    ]
  }

  provisioner "windows-restart" {
    restart_timeout = "30m"
  }

  provisioner "powershell" {
    script = "${path.root}/scripts/configure-agent.ps1"
    # Packer uploads this as a temporary script and deletes it afterwards
    # (skip_clean stays false); the password is stored as an LSA secret, not
    # in the registry.
    environment_vars = [
      "HVKUBE_AGENT_USER=${var.agent_username}",
      "HVKUBE_AGENT_PASSWORD=${var.agent_password}",
    ]
  }

  provisioner "windows-restart" {
    restart_timeout = "30m"
  }

  provisioner "powershell" {
    script = "${path.root}/scripts/cleanup.ps1"
  }

  provisioner "file" {
    source      = "${path.root}/scripts/finalize.ps1"
    destination = "C:\\Windows\\Temp\\hvkube-finalize.ps1"
  }

  # The one command that turns the VHDX into an hvkube template.
  post-processor "shell-local" {
    inline = [
      "echo Template disk: ${replace(local.vhdx_path, "/", "\\")}",
      "echo Register it with:",
      "echo ${local.hvkube_register_command}",
    ]
  }
}
